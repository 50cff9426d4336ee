"""Slack events: reactions on request messages are votes; channel chatter is not for us."""
from __future__ import annotations

from slack_bolt import App

from ...core.service import BotService


def register(app: App, svc: BotService) -> None:
    @app.event("reaction_added")
    def reaction_added(event: dict, body: dict) -> None:
        svc.approvals.on_reaction(event, body.get("event_id"), added=True)

    @app.event("reaction_removed")
    def reaction_removed(event: dict, body: dict) -> None:
        svc.approvals.on_reaction(event, body.get("event_id"), added=False)

    @app.event("message")
    def ignore_messages() -> None:
        pass
