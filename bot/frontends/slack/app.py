"""The Bolt app: each kind of listener registered by its module.

Slash commands are acknowledged at once; the work runs in the service's worker pool.
"""
from __future__ import annotations

from slack_bolt import App

from ...core.service import BotService
from . import commands, events, views


def build_app(svc: BotService) -> App:
    app = App(client=svc.notifier.client, signing_secret=svc.settings.slack_signing_secret,
              process_before_response=False)
    commands.register(app, svc)
    events.register(app, svc)
    views.register(app, svc)
    return app
