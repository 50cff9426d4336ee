"""`/db migrate request` and `/db migrate check` in Slack: a form to paste the SQL."""
from __future__ import annotations

import argparse
import json

from handlers.errors import DbopsError, UsageError
from handlers.report import Note, Report

from ...core import jobs, output, parts
from ...core.command import command
from ...core.registry import Bot, Form, Invocation
from .commands import analyse, build_request
from .naming import request_name

CALLBACK = "dbops_migrate"


def _slack_only(inv: Invocation) -> Report:
    raise UsageError("this command opens a form in Slack")


def _input(block_id: str, label: str, multiline: bool, optional: bool = False, placeholder: str = "") -> dict:
    element = {"type": "plain_text_input", "action_id": "value", "multiline": multiline}
    if placeholder:
        element["placeholder"] = {"type": "plain_text", "text": placeholder}
    return {"type": "input", "block_id": block_id, "optional": optional,
            "label": {"type": "plain_text", "text": label}, "element": element}


def modal_view(mode: str, channel: str, target: str | None) -> dict:
    blocks = []
    if mode == "request":
        blocks.append(_input("name", "Name", False, placeholder="add-notes-archived-flag"))
    blocks.append(_input("up", "UP migration (SQL)", True))
    blocks.append(_input("down", "DOWN migration (SQL)", True, optional=True))
    if mode == "request":
        blocks.append({"type": "input", "block_id": "staging", "optional": True,
                       "label": {"type": "plain_text", "text": "Staging"},
                       "element": {"type": "checkboxes", "action_id": "value", "options": [{
                           "text": {"type": "plain_text", "text": "I tested this on staging with production-like data"},
                           "value": "yes"}]}})
    return {"type": "modal", "callback_id": CALLBACK,
            "private_metadata": json.dumps({"mode": mode, "channel": channel, "target": target}),
            "title": {"type": "plain_text", "text": "Migration request" if mode == "request" else "Migration check"},
            "submit": {"type": "plain_text", "text": "Request approval" if mode == "request" else "Check"},
            "close": {"type": "plain_text", "text": "Cancel"}, "blocks": blocks}


def _value(values: dict, block: str) -> str | None:
    element = (values.get(block) or {}).get("value") or {}
    if element.get("type") == "checkboxes":
        return "yes" if element.get("selected_options") else None
    return element.get("value")


def form_errors(view: dict) -> dict[str, str]:
    """What Slack shows under the form's fields before it closes: a request's name must be a valid one."""
    meta = json.loads(view.get("private_metadata") or "{}")
    if meta.get("mode") != "request":
        return {}
    try:
        request_name(_value(view.get("state", {}).get("values", {}), "name"))
    except UsageError as exc:
        return {"name": str(exc)}
    return {}


def on_submission(svc: Bot, user: str, view: dict) -> None:
    """Runs off the request path: check (and for a request, rehearse, record and post)."""
    meta = json.loads(view.get("private_metadata") or "{}")
    values = view.get("state", {}).get("values", {})
    up, down = _value(values, "up") or "", _value(values, "down")
    channel = meta.get("channel") or svc.settings.channel
    mode = meta.get("mode", "check")
    cmd = migrate_request_form if mode == "request" else migrate_check_form
    args = argparse.Namespace(target=meta.get("target"), format="text")
    inv = Invocation(command=cmd, args=args, settings=svc.settings, actor=user, registry=svc.registry,
                     channel=channel, store=svc.store, front_end="slack")
    posted = []

    def check(inv: Invocation) -> Report:
        return analyse(inv, up, down, "pasted SQL").to_report()

    def request(inv: Invocation) -> Report:
        req, report = build_request(inv, up_sql=up, down_sql=down, name=request_name(_value(values, "name")),
                                    attested_by=user if _value(values, "staging") else None, apply_by="bot",
                                    channel=channel)
        posted.append(req)
        return report

    try:
        report = jobs.run(inv, svc.store, work=check if mode == "check" else request)
    except DbopsError as exc:
        svc.notifier.ephemeral(channel, user, parts.note_line(Note.warning(output.escape(str(exc)))))
        return
    if mode == "check":
        svc.notifier.post_report(channel, report)
    else:
        svc.approvals.post_request(posted[0])


migrate_request_form = command(
    "migrate request", "ask for approval of a migration: opens a form for the UP and DOWN SQL",
    where="slack", modal=lambda channel, target: modal_view("request", channel, target), long_running=True,
    lock="rehearsal")(_slack_only)  # not "migrate": a rehearsal never blocks an apply
migrate_check_form = command(
    "migrate check", "analyse a migration without asking for approval: opens a form for the SQL",
    where="slack", modal=lambda channel, target: modal_view("check", channel, target), lock="migrate")(_slack_only)
FORM = Form(CALLBACK, on_submission, form_errors)
