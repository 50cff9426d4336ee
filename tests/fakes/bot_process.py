"""The bot under test: the real `python -m bot` (gunicorn) in a subprocess, driven
over HTTP with correctly signed Slack requests."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx

SIGNING_SECRET = "test-signing-secret-8f2c"
BOT_TOKEN = "xoxb-test-token-1234"
ROOT = Path(__file__).resolve().parents[2]


def schedules_off(toml: str) -> str:
    """The test's dbops.toml with the daily runs off: in its own [backup], [drill] and [digest] tables
    when it has them (TOML declares a table once), else in tables of their own before it."""
    head = ""
    for table, line in (("backup", 'schedule = "off"'), ("drill", 'schedule = "off"'), ("digest", 'time = "off"')):
        if f"[{table}]\n" in toml:
            toml = toml.replace(f"[{table}]\n", f"[{table}]\n{line}\n", 1)
        else:
            head += f"[{table}]\n{line}\n"
    return head + toml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sign(body: str, timestamp: int | None = None, secret: str = SIGNING_SECRET) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    basestring = f"v0:{timestamp}:{body}".encode()
    digest = hmac.new(secret.encode(), basestring, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}


class BotProcess:
    def __init__(self, env: dict[str, str], workdir: Path, slack=None) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.slack = slack  # the fake Slack: a reaction event is sent for a reaction that is on the message
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DBOPS_", "DATABASE_URL"))},
                    "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                    "PORT": str(self.port), "DBOPS_CONFIG": str(workdir / "bot.toml"),
                    "DBOPS_DOTENV": str(workdir / ".env"), "PYTHONPATH": str(ROOT), **env}
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"bot-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> "BotProcess":
        # Daily runs stay off (a 03:00 backup is "due" whenever a test runs later in the day and
        # would race the test's own jobs); the test's dbops.toml, if any, is added below.
        own = self.workdir / "dbops.toml"
        (self.workdir / "bot.toml").write_text(schedules_off(own.read_text() if own.exists() else ""))
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "bot", "--mode", "http"], cwd=self.workdir,
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bot exited with {self.proc.returncode}:\n{self.output()}")
            try:
                httpx.get(self.url + "/healthz", timeout=2)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"bot did not start:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL the whole process group, as when a machine dies: nothing gets to clean up."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    # -- requests ------------------------------------------------------------
    def post_signed(self, body: str, content_type: str, headers: dict[str, str] | None = None,
                    timeout: float = 10) -> httpx.Response:
        hdrs = {"Content-Type": content_type, **(sign(body) if headers is None else headers)}
        return httpx.post(self.url + "/slack/events", content=body.encode(), headers=hdrs, timeout=timeout)

    def command(self, text: str, user: str = "U0ALICE", channel: str = "C0OPS", **kw) -> httpx.Response:
        body = urlencode({"token": "legacy", "team_id": "T0001", "team_domain": "fake", "channel_id": channel,
                          "channel_name": "ops", "user_id": user, "user_name": user.lower(), "command": "/db",
                          "text": text, "api_app_id": "A0001", "response_url": "http://127.0.0.1:9/unused",
                          "trigger_id": "1.2.3"})
        return self.post_signed(body, "application/x-www-form-urlencoded", **kw)

    def event(self, event: dict, event_id: str, retry_num: int | None = None) -> httpx.Response:
        item = event.get("item") or {}
        if self.slack is not None and event.get("type") in ("reaction_added", "reaction_removed"):
            self.slack.user_reacts(item.get("channel", ""), item.get("ts", ""), event.get("user", ""),
                                   event.get("reaction", ""), added=event["type"] == "reaction_added")
        body = json.dumps({"token": "legacy", "team_id": "T0001", "api_app_id": "A0001", "type": "event_callback",
                           "event_id": event_id, "event_time": int(time.time()), "event": event,
                           "authorizations": [{"team_id": "T0001", "user_id": "U0BOT", "is_bot": True}]})
        headers = sign(body)
        if retry_num is not None:
            headers |= {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        return self.post_signed(body, "application/json", headers=headers)


def view_submission(user: str, callback_id: str, private_metadata: str, values: dict) -> str:
    """The form-encoded body Slack sends when a modal is submitted."""
    payload = {"type": "view_submission", "team": {"id": "T0001", "domain": "fake"},
               "user": {"id": user, "username": user.lower(), "team_id": "T0001"}, "api_app_id": "A0001",
               "token": "legacy", "trigger_id": "1.2.3",
               "view": {"id": "V0001", "team_id": "T0001", "type": "modal", "callback_id": callback_id,
                        "private_metadata": private_metadata, "state": {"values": values}}}
    return urlencode({"payload": json.dumps(payload)})
