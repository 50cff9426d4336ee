"""Slack events: reactions on request messages are votes; channel chatter is not for us."""
from __future__ import annotations

import logging

from slack_bolt import App

from ...core.service import BotService

log = logging.getLogger("dbops.slack")


def register(app: App, svc: BotService) -> None:
    @app.event("reaction_added")
    def reaction_added(event: dict, body: dict) -> None:
        vote(svc, event, body, added=True)

    @app.event("reaction_removed")
    def reaction_removed(event: dict, body: dict) -> None:
        vote(svc, event, body, added=False)

    @app.event("message")
    def ignore_messages() -> None:
        pass


def vote(svc: BotService, event: dict, body: dict, added: bool) -> None:
    approvals = svc.approvals
    if approvals is None:  # degraded: a vote cannot be recorded; say so rather than lose it silently
        log.warning("a reaction by %s was not counted: the state database is unreachable", event.get("user"))
        item = event.get("item") or {}
        if item.get("channel") and event.get("user"):
            svc.notifier.ephemeral(item["channel"], event["user"], ":warning: your reaction was not counted: the "
                                   "state database is unreachable. React again once `/db status` says it is back.")
        return
    approvals.on_reaction(event, body.get("event_id"), added=added)
