"""The Bolt app: every listener registered here, each a short function that delegates.

Slash commands are acknowledged at once; the work runs in the service's worker pool.
"""
from __future__ import annotations

import logging

from slack_bolt import Ack, App

from handlers.errors import UsageError

from . import approvals, migrate_slack, render
from .registry import parse
from .service import BotService

log = logging.getLogger("dbops.slack")


def build_app(svc: BotService) -> App:
    app = App(client=svc.notifier.client, signing_secret=svc.settings.slack_signing_secret,
              process_before_response=False)

    @app.command("/db")
    def on_db(ack: Ack, command: dict) -> None:
        handle_db_command(svc, ack, command)

    approvals.register_listeners(app, svc)
    migrate_slack.register_listeners(app, svc)

    @app.event("message")
    def ignore_messages() -> None:  # channel chatter is not for us
        pass

    return app


def refusal(svc: BotService, user: str, channel: str) -> str | None:
    settings = svc.settings
    if settings.allowed_channels and channel not in settings.allowed_channels:
        return "dbops does not take commands in this channel. Ask an admin to add it to DBOPS_ALLOWED_CHANNELS."
    if settings.allowed_users and user not in settings.allowed_users:
        return "you are not on the list of people who may run dbops commands (DBOPS_ALLOWED_USERS)."
    return None


def handle_db_command(svc: BotService, ack: Ack, command: dict) -> None:
    user, channel, text = command.get("user_id", ""), command.get("channel_id", ""), command.get("text", "")
    refused = refusal(svc, user, channel)
    if refused:
        ack(f":no_entry: {refused}")
        svc.runner.submit(lambda: svc.store.audit(user, "refused", "refused", channel=channel,
                                                  subcommand=text[:200], detail=refused))
        return
    try:
        cmd, args = parse(text, "slack", prog="/db")
    except UsageError as exc:
        message = str(exc)  # `exc` is gone once the except block ends; the audit runs later
        ack(f":warning: {message}")
        svc.runner.submit(lambda: svc.store.audit(user, "command", "usage-error", channel=channel,
                                                  subcommand=text[:200], detail=message[:500]))
        return
    if cmd.name == "help":
        from .registry import Invocation, help_rows

        if getattr(args, "topic", None):  # `/db help backup`, `/db backup --help`
            inv = Invocation(command=cmd, args=args, settings=svc.settings, actor=user, front_end="slack")
            report = cmd.run(inv)
            ack(text=report.title, blocks=render.report_blocks(report)[:50])
        else:
            ack(text="dbops commands", blocks=render.help_blocks(help_rows("slack")))
        svc.runner.submit(lambda: svc.store.audit(user, "command", "ok", channel=channel, subcommand="help"))
        return
    if cmd.approver_only(args) and not svc.is_approver(user):
        unless = f" (anyone may run it with `{cmd.open_with}`)" if cmd.open_with else ""
        ack(f":no_entry: `{cmd.name}` is for approvers only{unless}.")
        svc.runner.submit(lambda: svc.store.audit(user, "refused", "refused", channel=channel,
                                                  subcommand=cmd.name, detail="not an approver"))
        return
    if cmd.modal:
        ack()
        migrate_slack.open_modal(svc, cmd.modal, command.get("trigger_id", ""), channel, getattr(args, "target", None))
        return
    if cmd.long_running:
        ack(f":hourglass_flowing_sand: queued `{cmd.name}`; progress will show in this channel.")
    else:
        ack()
    svc.submit_command(cmd, args, actor=user, channel=channel, user=user)
