"""dbops: the Slack bot, its command registry, jobs, approvals, scheduler, state store and CLI."""

__version__ = "0.1.0"
