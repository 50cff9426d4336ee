"""Posting to Slack. Everything that leaves the bot passes `scrub` here, so a
secret cannot reach a channel; a message that finally cannot be posted is
logged and the caller carries on (a job is never failed by Slack being down)."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator

from handlers.report import Progress, Report
from handlers.target import scrub, scrub_data

from . import output

log = logging.getLogger("dbops.slack")

# Payload fields whose values are Slack's enums or IDs, never text a secret could be in: kept as
# they are, so scrubbing a secret that is also a format word ("text") leaves the payload valid.
SLACK_STRUCTURE = frozenset({"type", "style", "channel", "ts", "thread_ts", "timestamp", "user", "usergroup",
                             "trigger_id", "action_id", "block_id", "callback_id", "view_id", "response_action"})


def make_client(token: str, base_url: str) -> WebClient:
    backoff = BackoffRetryIntervalCalculator(backoff_factor=0.5)
    return WebClient(token=token, base_url=base_url, timeout=15, retry_handlers=[
        RateLimitErrorRetryHandler(max_retry_count=5),  # honours Retry-After
        ServerErrorRetryHandler(max_retry_count=4, interval_calculator=backoff),
        ConnectionErrorRetryHandler(max_retry_count=4, interval_calculator=backoff),
    ])


class Notifier:
    def __init__(self, client: WebClient | None, secrets: list[str]) -> None:
        self.client = client
        self.secrets = secrets

    def _clean(self, payload: dict[str, Any]) -> dict[str, Any]:
        # String values are scrubbed before serialising: in JSON text a secret with `"`, `\\` or
        # non-ASCII characters is escaped and would slip past a search for it.
        return scrub_data(payload, self.secrets, keep=SLACK_STRUCTURE)

    def call(self, method: str, **payload: Any) -> dict | None:
        if self.client is None:
            return None
        payload = self._clean(payload)
        try:
            return self.client.api_call(method, json=payload).data
        except SlackApiError as exc:
            log.error("Slack %s failed: %s", method, exc.response.get("error"))
        except Exception as exc:  # network gone after retries: log, carry on
            log.error("Slack %s failed: %s", method, type(exc).__name__)
        return None

    def post(self, channel: str, text: str, blocks: list | None = None, thread_ts: str | None = None) -> str | None:
        payload: dict[str, Any] = {"channel": channel, "text": text}
        if blocks:
            payload["blocks"] = blocks
        if thread_ts:
            payload["thread_ts"] = thread_ts
        answer = self.call("chat.postMessage", **payload)
        return answer.get("ts") if answer else None

    def update(self, channel: str, ts: str, text: str, blocks: list | None = None) -> bool:
        payload: dict[str, Any] = {"channel": channel, "ts": ts, "text": text}
        if blocks is not None:
            payload["blocks"] = blocks
        return self.call("chat.update", **payload) is not None

    def upload(self, channel: str, thread_ts: str | None, filename: str, content: str, title: str,
               snippet_type: str | None = "sql") -> bool:
        """Attaches a text file in a message's thread (Slack's external upload: get a URL, send the
        bytes, complete). The content is scrubbed like every message."""
        if self.client is None:
            return False
        content, filename, title = (scrub(v, self.secrets) for v in (content, filename, title))
        try:
            self.client.files_upload_v2(channel=channel, thread_ts=thread_ts, content=content, filename=filename,
                                        title=title, snippet_type=snippet_type)
            return True
        except SlackApiError as exc:
            log.error("Slack file upload failed: %s", exc.response.get("error"))
        except Exception as exc:  # network gone after retries, or the upload URL refused the bytes
            log.error("Slack file upload failed: %s", type(exc).__name__)
        return False

    def ephemeral(self, channel: str, user: str, text: str) -> None:
        self.call("chat.postEphemeral", channel=channel, user=user, text=text)

    def react(self, channel: str, ts: str, name: str) -> None:
        self.call("reactions.add", channel=channel, timestamp=ts, name=name)

    def post_report(self, channel: str, report: Report, thread_ts: str | None = None) -> str | None:
        """Posts a report's short main message, then its detail (and full report file) in the thread:
        the main message's own, or `thread_ts` when the report answers inside a thread already."""
        slack = output.slack_report(report)
        first = self.post(channel, slack.main["text"], slack.main["blocks"], thread_ts=thread_ts)
        self._post_detail(channel, thread_ts or first, slack)
        return first

    def replace_with_report(self, channel: str, ts: str, report: Report) -> None:
        """Turns a progress message into the report's main message, the detail in its thread."""
        slack = output.slack_report(report)
        if not self.update(channel, ts, slack.main["text"], slack.main["blocks"]):
            self.post_report(channel, report)
            return
        self._post_detail(channel, ts, slack)

    def _post_detail(self, channel: str, thread_ts: str | None, slack: output.SlackReport) -> None:
        if thread_ts is None:  # the main message was not posted: its detail has nowhere to go
            return
        for message in slack.thread:
            self.post(channel, message["text"], message["blocks"], thread_ts=thread_ts)
        if slack.file and not self.upload(channel, thread_ts, slack.file.filename, slack.file.content,
                                          slack.file.filename, snippet_type=None):
            self.post(channel, f":warning: The full report (`{slack.file.filename}`) could not be attached here; "
                               "the same command in a terminal (or with `--format json`) prints it.",
                      thread_ts=thread_ts)


class ProgressMessage:
    """One channel message per job, updated in place at most every `interval` seconds."""

    def __init__(self, notifier: Notifier, channel: str | None, title: str, interval: float = 5.0) -> None:
        self.notifier, self.channel, self.title, self.interval = notifier, channel, title, interval
        self.ts: str | None = None
        self.started = time.monotonic()
        self._last_sent = 0.0
        self._latest: Progress | None = None
        self._lock = threading.Lock()

    def start(self, text: str) -> str | None:
        if self.channel:
            self.ts = self.notifier.post(self.channel, f":hourglass_flowing_sand: {self.title}: {text}")
            self._last_sent = time.monotonic()
        return self.ts

    def tick(self, progress: Progress) -> None:
        with self._lock:
            self._latest = progress
            now = time.monotonic()
            if self.ts is None or now - self._last_sent < self.interval:
                return
            self._last_sent = now
        line = output.progress_line(progress, now - self.started)
        self.notifier.update(self.channel, self.ts, f":hourglass_flowing_sand: {self.title}: {line}")

    def finish(self, report: Report) -> None:
        if not self.channel:
            return
        if self.ts:
            self.notifier.replace_with_report(self.channel, self.ts, report)
        else:
            self.notifier.post_report(self.channel, report)

