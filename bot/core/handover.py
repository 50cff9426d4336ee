"""Handing a secret to the one person who asked for it (a read-only role's connection string, a
backup's download link): in a terminal on its own output once, in Slack as a message only they see.
The one way a secret reaches Slack: straight through Slack's client, never the Notifier, which
scrubs every secret it knows; so nothing of it is in a report, a log line or the audit."""
from __future__ import annotations

import logging
import sys

from handlers.report import Outcome, Report

from .config import Settings
from .registry import Invocation

log = logging.getLogger("dbops.handover")


def send_privately(client, channel: str | None, user: str, text: str, what: str) -> bool:
    """Ephemeral in the channel where it was asked, else a direct message; True once Slack took it.
    `what` names it in the log (never `text`, which holds the secret)."""
    if client is None:
        return False
    for method, payload in ((("chat.postEphemeral", {"channel": channel, "user": user, "text": text}),) if channel
                            else ()) + (("chat.postMessage", {"channel": user, "text": text}),):
        try:
            if client.api_call(method, json=payload).data.get("ok"):
                return True
        except Exception as exc:  # the reason only: the payload holds the secret
            log.error("handing over %s by %s failed: %s", what, method, type(exc).__name__)
    return False


def slack_client(settings: Settings):
    from .notify import make_client  # slack_sdk: loaded only when something is handed over

    return make_client(settings.slack_bot_token, settings.slack_api_url) if settings.slack_bot_token else None


def hand_over(inv: Invocation, report: Report, text: str, what: str, again: str) -> Report:
    """`text` to the requester only; the report says where it went (`what`: "the connection string"),
    or that it could not be sent and how to get it again (`again`: "run `readonly rotate x`")."""
    if inv.front_end == "cli":
        # The terminal is the requester's own. With --format json or line, standard output is for a
        # program: the secret goes to standard error, so that output stays parseable.
        plain = getattr(inv.args, "format", "text") == "text"
        print(text, file=sys.stdout if plain else sys.stderr, flush=True)
        report.summary += (f"; {what} was printed above, once" if plain else
                           f"; {what} was printed on standard error, once")
    elif send_privately(slack_client(inv.settings), inv.channel, inv.actor, text, what):
        report.summary += f"; {what} was sent to you only"
    else:
        report.outcome = Outcome.FAILED
        report.summary += f"; {what} could NOT be sent to you: {again}"
    return report
