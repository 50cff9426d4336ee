"""Approval by reaction: requests, votes, and the reaction events that move them.

A request is approved when enough approvers put the approve reaction on
exactly its message; an approver's reject reaction rejects it; removing an
approval before apply withdraws it; requests expire. Reactions from anyone
else, from bots, on other messages, or repeated deliveries change nothing.
The request stays one message whose first line, its state (pending with the
count of approvals, approved, applying, applied, failed, rejected, expired), is
redrawn in place at every change; each vote is one short line in its thread,
where the full SQL is attached as files; every change goes to the audit log.
All of it lives in the state store, so pending requests survive a restart.

`book` holds the requests and votes (SQL) and names their states (enums),
`message` draws a request (Block Kit), `reactions` turns reaction events into
votes and tells what changed.
"""
