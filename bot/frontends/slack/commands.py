"""`/db ...`: help answered at once, a form opened, or the command queued for the worker pool."""
from __future__ import annotations

from slack_bolt import Ack, App, BoltContext

from ...core import output
from ...core.registry import Invocation
from ...core.service import BotService
from .access import audit_later, db_middleware


def register(app: App, svc: BotService) -> None:
    @app.command("/db", middleware=db_middleware(svc))
    def on_db(ack: Ack, command: dict, context: BoltContext) -> None:
        handle_db_command(svc, ack, command, *context["dbops_command"])


def handle_db_command(svc: BotService, ack: Ack, command: dict, cmd, args) -> None:
    """Runs once the access checks let the command through."""
    user, channel = command.get("user_id", ""), command.get("channel_id", "")
    if cmd.instant:
        if getattr(args, "topic", None):  # `/db help backup`, `/db backup --help`
            inv = Invocation(command=cmd, args=args, settings=svc.settings, actor=user, registry=svc.registry,
                             front_end="slack")
            report = cmd.run(inv)
            ack(text=report.title, blocks=output.report_blocks(report)[:50])
        else:
            ack(text="dbops commands", blocks=output.help_blocks(svc.registry.help_rows("slack")))
        audit_later(svc, command, "command", "ok", cmd.name)
        return
    if cmd.modal:
        ack()
        svc.notifier.call("views.open", trigger_id=command.get("trigger_id", ""),
                          view=cmd.modal(channel, getattr(args, "target", None)))
        return
    if cmd.long_running:
        ack(f":hourglass_flowing_sand: queued `{cmd.name}`; progress will show in this channel.")
    else:
        ack()
    svc.submit_command(cmd, args, actor=user, channel=channel, user=user)
