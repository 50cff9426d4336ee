"""The jobs dbops does. Handlers know nothing about Slack: they take a target
(or a connection) and settings, and return plain result objects (`Report`)."""
