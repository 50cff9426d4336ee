"""The Bolt app: each kind of listener registered by its module.

Slash commands are acknowledged at once; the work runs in the service's worker pool.
"""
from __future__ import annotations

import logging

from slack_bolt import App
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped

from ...core.service import BotService
from . import commands, events, views


class _OwnClientNotice(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN itself and, given our client (its base URL, its retries) as well,
    warns at every start that the token will be unused: it is the same token, so that line goes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


_BOLT_LOG = logging.getLogger("slack_bolt.App")
if not any(isinstance(f, _OwnClientNotice) for f in _BOLT_LOG.filters):
    _BOLT_LOG.addFilter(_OwnClientNotice())


def build_app(svc: BotService) -> App:
    app = App(client=svc.notifier.client, signing_secret=svc.settings.slack_signing_secret,
              process_before_response=False)
    commands.register(app, svc)
    events.register(app, svc)
    views.register(app, svc)
    return app
