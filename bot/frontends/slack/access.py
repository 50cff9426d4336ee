"""Who may run what from Slack, as listener middleware of `/db`: each check either lets the request
on (`next()`) or answers it with the refusal, and every refusal is audited the same way."""
from __future__ import annotations

import logging
from typing import Callable

from slack_bolt import Ack, BoltContext, BoltResponse

from handlers.errors import UsageError

from ...core import output
from ...core.service import BotService

Middleware = Callable[..., BoltResponse | None]
log = logging.getLogger("dbops.slack")


def audit_later(svc: BotService, command: dict, action: str, outcome: str, subcommand: str,
                detail: str | None = None) -> None:
    """Writes the audit entry off the request path: Slack gets its answer first."""
    user, channel = command.get("user_id", ""), command.get("channel_id", "")
    store = svc.store
    if store is None:  # degraded: the log is the only audit trail until the state store is back
        log.warning("audit (state store down): %s %s %s %s %s", user, action, outcome, subcommand, detail or "")
        return
    svc.runner.submit(lambda: store.audit(user, action, outcome, channel=channel, subcommand=subcommand,
                                          detail=detail))


def refusal(svc: BotService, user: str, channel: str) -> str | None:
    settings = svc.settings
    if settings.allowed_channels and channel not in settings.allowed_channels:
        return "dbops does not take commands in this channel. Ask an admin to add it to DBOPS_ALLOWED_CHANNELS."
    if settings.allowed_users and user not in settings.allowed_users:
        return "you are not on the list of people who may run dbops commands (DBOPS_ALLOWED_USERS)."
    return None


def db_middleware(svc: BotService) -> list[Middleware]:
    """In order: the allowed channel and user, the command read from the text, approvers-only commands.
    A refused request gets its reason as the acknowledgement and goes no further."""

    def allowed_here(ack: Ack, command: dict, next: Callable[[], None]) -> BoltResponse | None:
        refused = refusal(svc, command.get("user_id", ""), command.get("channel_id", ""))
        if refused:
            audit_later(svc, command, "refused", "refused", command.get("text", "")[:200], refused)
            return ack(f":no_entry: {refused}")
        next()
        return None

    def parsed(ack: Ack, command: dict, context: BoltContext, next: Callable[[], None]) -> BoltResponse | None:
        text = command.get("text", "")
        try:
            context["dbops_command"] = svc.registry.parse(text, "slack", prog="/db")
        except UsageError as exc:
            audit_later(svc, command, "command", "usage-error", text[:200], str(exc)[:500])
            return ack(f":warning: {output.escape(str(exc))}")  # it quotes what was typed
        next()
        return None

    def approvers_only(ack: Ack, command: dict, context: BoltContext, next: Callable[[], None]) -> BoltResponse | None:
        cmd, args = context["dbops_command"]
        if cmd.approver_only(args, svc.settings) and not svc.is_approver(command.get("user_id", "")):
            unless = f" (anyone may run it with `{cmd.open_with}`)" if cmd.open_with else ""
            audit_later(svc, command, "refused", "refused", cmd.name, "not an approver")
            return ack(f":no_entry: `{cmd.name}` is for approvers only{unless}.")
        next()
        return None

    def without_state(ack: Ack, command: dict, context: BoltContext, next: Callable[[], None]) -> BoltResponse | None:
        cmd, _ = context["dbops_command"]
        if svc.store is not None or cmd.runs_degraded:
            next()
            return None
        audit_later(svc, command, "refused", "degraded", cmd.name, "the state database is unreachable")
        return ack(f":warning: the state database is unreachable: `{cmd.name}` cannot run now. Working without "
                   f"it: {svc.registry.works_degraded('slack', '/db ')}.")

    return [allowed_here, parsed, approvers_only, without_state]
