"""Approval by reaction: requests, votes, and the reaction events that move them.

A request is approved when enough approvers put the approve reaction on
exactly its message; an approver's reject reaction rejects it; removing an
approval before apply withdraws it; requests expire. Reactions from anyone
else, from bots, on other messages, or repeated deliveries change nothing.
Every change is told in the message's thread, shown on the message itself,
and written to the audit log. All of it lives in the state store, so pending
requests survive a restart.

`book` holds the requests and votes (SQL), `message` draws a request (Block Kit),
`reactions` turns reaction events into votes and tells what changed.
"""
