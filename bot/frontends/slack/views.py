"""Form submissions: each area's `Form`, closed at once and handled in the worker pool."""
from __future__ import annotations

from slack_bolt import Ack, App

from ...core.registry import Form
from ...core.service import BotService


def register(app: App, svc: BotService) -> None:
    for form in svc.registry.forms.values():
        app.view(form.callback_id)(_submitted(svc, form))


def _submitted(svc: BotService, form: Form):
    def submitted(ack: Ack, body: dict, view: dict) -> None:
        errors = form.errors(view) if form.errors else {}
        if errors:  # the form stays open, each message under its field
            ack(response_action="errors", errors=errors)
            return
        ack()  # closes the form at once; the work is posted to the channel
        user = body.get("user", {}).get("id", "")
        svc.runner.submit(lambda: form.submitted(svc, user, view))

    submitted.__name__ = f"submitted_{form.callback_id}"
    return submitted
