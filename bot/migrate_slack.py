"""`/db migrate request` and `/db migrate check` in Slack: a form to paste the SQL."""
from __future__ import annotations

import argparse
import json
import logging
from typing import TYPE_CHECKING

from handlers.errors import ConfigError, DbopsError, UsageError
from handlers.migrations import MigrationCheckSettings
from handlers.migrations.apply import ApplySettings
from handlers.migrations.rehearsal import RehearsalSettings
from handlers.report import Report

from . import jobs, migrate_flow, service
from .approvals import ApprovalSettings
from .config import SETTINGS_CHECKS
from .migrate_commands import analyse, build_request
from .registry import COMMANDS, Invocation, command

if TYPE_CHECKING:
    from .service import BotService

log = logging.getLogger("dbops.migrate")
CALLBACK = "dbops_migrate"


def _slack_only(inv: Invocation) -> Report:
    raise UsageError("this command opens a form in Slack")


command("migrate request", "ask for approval of a migration: opens a form for the UP and DOWN SQL",
        where="slack", modal="request", long_running=True, lock="migrate")(_slack_only)
command("migrate check", "analyse a migration without asking for approval: opens a form for the SQL",
        where="slack", modal="check", lock="migrate")(_slack_only)


def _migrate_settings(settings) -> None:
    section = settings.section("migrate")
    parsers = {"check": MigrationCheckSettings.from_dict, "rehearsal": RehearsalSettings.from_dict,
               "apply": ApplySettings.from_dict}
    for name, value in section.items():
        if name not in parsers:
            raise ConfigError(f"[migrate.{name}] is not a section dbops knows; known: "
                              + ", ".join(f"[migrate.{k}]" for k in parsers))
        if not isinstance(value, dict):
            raise ConfigError(f"[migrate.{name}] must be a table of settings")
        parsers[name](value)


SETTINGS_CHECKS.extend([("approvals", lambda settings: ApprovalSettings.from_dict(settings.section("approvals"))),
                        ("migrate", _migrate_settings)])
service.STARTUP_HOOKS.append(migrate_flow.leftover_rehearsals_at_startup)


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


def open_modal(svc: "BotService", mode: str, trigger_id: str, channel: str, target: str | None) -> None:
    svc.notifier.call("views.open", trigger_id=trigger_id, view=modal_view(mode, channel, target))


def _value(values: dict, block: str) -> str | None:
    element = (values.get(block) or {}).get("value") or {}
    if element.get("type") == "checkboxes":
        return "yes" if element.get("selected_options") else None
    return element.get("value")


def on_submission(svc: "BotService", user: str, view: dict) -> None:
    """Runs off the request path: check (and for a request, rehearse, record and post)."""
    meta = json.loads(view.get("private_metadata") or "{}")
    values = view.get("state", {}).get("values", {})
    up, down = _value(values, "up") or "", _value(values, "down")
    channel = meta.get("channel") or svc.settings.channel
    mode = meta.get("mode", "check")
    cmd = COMMANDS[f"slack:migrate {mode}"]
    args = argparse.Namespace(target=meta.get("target"), format="text")
    inv = Invocation(command=cmd, args=args, settings=svc.settings, actor=user, channel=channel, state=svc.store,
                     front_end="slack")
    posted = []

    def check(inv: Invocation) -> Report:
        return analyse(inv, up, down, "pasted SQL").to_report()

    def request(inv: Invocation) -> Report:
        req, report = build_request(inv, up_sql=up, down_sql=down, name=_value(values, "name") or "",
                                    attested_by=user if _value(values, "staging") else None, apply_by="bot",
                                    channel=channel)
        posted.append(req)
        return report

    try:
        report = jobs.run(inv, svc.store, work=check if mode == "check" else request)
    except DbopsError as exc:
        svc.notifier.ephemeral(channel, user, f":warning: {exc}")
        return
    if mode == "check":
        svc.notifier.post_report(channel, report)
    else:
        svc.approvals.post_request(posted[0])


def register_listeners(app, svc: "BotService") -> None:
    @app.view(CALLBACK)
    def submitted(ack, body: dict, view: dict) -> None:
        ack()  # closes the form at once; the work is posted to the channel
        user = body.get("user", {}).get("id", "")
        svc.runner.submit(lambda: on_submission(svc, user, view))
