"""A fake Slack Web API: a real HTTP server on 127.0.0.1 that records every call.

Point slack_sdk at it with `WebClient(base_url=fake.url)` (the bot: SLACK_API_URL).
`fail_next(method, status, times, retry_after)` makes it answer errors first.

Every message the bot sends is checked as Slack (and a phone) would take it: blocks valid by
slack_sdk's Block Kit models, within Slack's limits (one table block a message, of at most 100
rows and 20 cells a row), and no monospace line wider than 72 characters; replies and files
hang together as in Slack (no reply inside a reply's thread, a file completed after its bytes). What breaks a rule is recorded in `VIOLATIONS`; tests/conftest.py fails the test
that caused it.
"""
from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from slack_sdk.models.blocks import Block

MESSAGE_METHODS = ("chat.postMessage", "chat.update", "chat.postEphemeral")
MONOSPACE_WIDTH = 72  # what a phone shows of a code block without scrolling
LIMITS = {"blocks": 50, "section": 3000, "header": 150, "fields": 10, "text": 40000,
          "tables": 1, "table_rows": 100, "table_cells": 20}
TABLE_CELL_TYPES = ("raw_text", "raw_number", "rich_text")
VIOLATIONS: list[str] = []  # from every FakeSlack in this process; tests/conftest.py checks it after each test


def all_texts(value: Any):
    """Every string under a "text" key, anywhere in a payload."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "text" and isinstance(item, str):
                yield item
            else:
                yield from all_texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from all_texts(item)


def monospace_lines(text: str) -> list[str]:
    """The lines of `text` that are inside ``` fences."""
    lines, code = [], False
    for n, piece in enumerate(text.split("```")):
        if n:
            code = not code
        if code:
            lines += piece.split("\n")
    return lines


def payload_violations(method: str, params: dict[str, Any]) -> list[str]:
    """What in one chat.* payload Slack would refuse, or a phone would show badly."""
    found = []
    text = params.get("text")
    if isinstance(text, str) and len(text) > LIMITS["text"]:
        found.append(f"{method}: text is {len(text)} characters (Slack's limit: {LIMITS['text']})")
    blocks = params.get("blocks")
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    blocks = blocks or []
    if len(blocks) > LIMITS["blocks"]:
        found.append(f"{method}: {len(blocks)} blocks (Slack's limit: {LIMITS['blocks']})")
    for n, block in enumerate(blocks):
        try:
            parsed = Block.parse(block)
            if parsed is None:
                raise ValueError(f"unknown block type {block.get('type')!r}")
            parsed.validate_json()
        except Exception as exc:  # slack_sdk's SlackObjectFormationError, or a malformed dict
            found.append(f"{method}: block {n} ({block.get('type')}) is not valid Block Kit: {exc}")
        limit = LIMITS.get(block.get("type", ""))
        body = (block.get("text") or {}).get("text", "") if isinstance(block.get("text"), dict) else ""
        if limit and len(body) > limit:
            found.append(f"{method}: block {n} ({block['type']}) text is {len(body)} characters (limit {limit})")
        if len(block.get("fields") or []) > LIMITS["fields"]:
            found.append(f"{method}: block {n} has {len(block['fields'])} fields (limit {LIMITS['fields']})")
        if block.get("type") == "table":
            found += [f"{method}: block {n} (table): {problem}" for problem in table_violations(block)]
    tables = sum(1 for block in blocks if block.get("type") == "table")
    if tables > LIMITS["tables"]:
        found.append(f"{method}: {tables} table blocks (Slack allows {LIMITS['tables']} a message)")
    for piece in all_texts({"text": text, "blocks": blocks}):
        for line in monospace_lines(piece):
            if len(line) > MONOSPACE_WIDTH:
                found.append(f"{method}: a monospace line of {len(line)} characters (more than "
                             f"{MONOSPACE_WIDTH}): {line[:100]!r}")
    return found


def table_violations(block: dict[str, Any]) -> list[str]:
    """What Slack refuses in a table block (slack_sdk's model checks only that it has rows)."""
    rows = block.get("rows") or []
    found = []
    if len(rows) > LIMITS["table_rows"]:
        found.append(f"{len(rows)} rows (limit {LIMITS['table_rows']})")
    widths = {len(row) for row in rows}
    if widths and max(widths) > LIMITS["table_cells"]:
        found.append(f"a row of {max(widths)} cells (limit {LIMITS['table_cells']})")
    if len(widths) > 1:
        found.append(f"rows of different lengths {sorted(widths)}")
    for row in rows:
        for cell in row:
            if not isinstance(cell, dict) or cell.get("type") not in TABLE_CELL_TYPES:
                found.append(f"a cell that is not one of {TABLE_CELL_TYPES}: {cell!r:.80}")
            elif cell["type"] == "raw_text" and not (isinstance(cell.get("text"), str) and cell["text"]):
                found.append("an empty raw_text cell")
    return found


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    status: int
    at: float = field(default_factory=time.time)
    raw: str = ""  # the request body exactly as the bot sent it


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.failures: dict[str, list[tuple[int, int | None]]] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.users: dict[str, dict] = {"U0BOT": {"id": "U0BOT", "name": "dbops", "is_bot": True}}
        self.uploads: dict[str, dict[str, Any]] = {}  # file id -> filename, content (the bytes sent), channel, thread_ts
        self.reply_ts: set[str] = set()  # messages posted inside a thread (no thread can start from them)
        # (channel, ts) -> reaction name -> the users who left it, in order: the bot's through
        # reactions.add, a person's through user_reacts (which, like Slack, sends no event itself)
        self.reactions: dict[tuple[str, str], dict[str, list[str]]] = {}
        self._ts = itertools.count(1)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/"

    def start(self) -> "FakeSlack":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- test controls -------------------------------------------------------
    def fail_next(self, method: str, status: int, times: int = 1, retry_after: int | None = None) -> None:
        with self._lock:
            self.failures.setdefault(method, []).extend([(status, retry_after)] * times)

    def user_reacts(self, channel: str, ts: str, user: str, name: str, added: bool = True) -> None:
        """A person adds (or removes) a reaction in Slack; the bot hears of it only from an event,
        or by reading the message back (reactions.get)."""
        with self._lock:
            users = self.reactions.setdefault((channel, ts), {}).setdefault(name, [])
            if added and user not in users:
                users.append(user)
            elif not added and user in users:
                users.remove(user)

    def calls_to(self, method: str, ok_only: bool = True) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and (c.status == 200 or not ok_only)]

    def raw_bodies(self) -> list[str]:
        """Every request body the bot sent, API calls and file uploads alike."""
        with self._lock:
            return [c.raw for c in self.calls]

    def texts(self, method: str | None = None) -> list[str]:
        """Every text the bot sent (message text plus its blocks' texts)."""
        methods = (method,) if method else ("chat.postMessage", "chat.update", "chat.postEphemeral")
        out = []
        for call in self.calls:
            if call.method in methods and call.status == 200:
                out.append(json.dumps(call.params))
        return out

    def wait_for(self, predicate, timeout: float = 20.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; calls: {[(c.method, c.status) for c in self.calls]}")

    def thread_violations(self, method: str, params: dict[str, Any]) -> list[str]:
        """What Slack would not take in how replies and files hang together: threads do not nest,
        and a file is completed only once its bytes went to the URL handed out for it."""
        found = []
        thread = params.get("thread_ts")
        if method in ("chat.postMessage", "files.completeUploadExternal") and thread in self.reply_ts:
            found.append(f"{method}: thread_ts {thread} is itself a reply (Slack threads do not nest)")
        if method == "files.completeUploadExternal":
            files = params.get("files")
            files = json.loads(files) if isinstance(files, str) else files or []
            for f in files:
                upload = self.uploads.get(f.get("id"))
                if upload is None:
                    found.append(f"{method}: file {f.get('id')} was never given an upload URL")
                elif upload.get("content") is None:
                    found.append(f"{method}: file {f.get('id')} is completed before its bytes were uploaded")
        return found

    # -- the API -------------------------------------------------------------
    def answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        ts = f"{1700000000 + next(self._ts)}.000100"
        channel = params.get("channel", "C000")
        if method == "auth.test":
            return {"ok": True, "url": "https://fake.slack.com/", "team": "Fake", "user": "dbops",
                    "team_id": "T0001", "user_id": "U0BOT", "bot_id": "B0BOT"}
        if method == "chat.postMessage":
            if params.get("thread_ts"):
                with self._lock:
                    self.reply_ts.add(ts)
            return {"ok": True, "channel": channel, "ts": ts,
                    "message": {"text": params.get("text"), "ts": ts, "thread_ts": params.get("thread_ts")}}
        if method == "chat.update":
            return {"ok": True, "channel": channel, "ts": params.get("ts"), "text": params.get("text")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": ts}
        if method == "chat.delete":
            return {"ok": True, "channel": channel, "ts": params.get("ts")}
        if method == "reactions.add":
            self.user_reacts(channel, params.get("timestamp", ""), "U0BOT", params.get("name", ""))
            return {"ok": True}
        if method == "reactions.get":
            with self._lock:
                shown = self.reactions.get((channel, params.get("timestamp", "")), {})
                listed = [{"name": name, "users": list(users), "count": len(users)}
                          for name, users in shown.items() if users]
            return {"ok": True, "type": "message", "channel": channel,
                    "message": {"type": "message", "ts": params.get("timestamp"), "reactions": listed}}
        if method == "users.info":
            user = params.get("user")
            return {"ok": True, "user": self.users.get(user, {"id": user, "name": user, "is_bot": False})}
        if method == "usergroups.users.list":
            return {"ok": True, "users": self.usergroups.get(params.get("usergroup"), [])}
        if method == "files.getUploadURLExternal":
            file_id = f"F{next(self._ts):04d}"
            with self._lock:
                self.uploads[file_id] = {"filename": params.get("filename"), "content": None}
            return {"ok": True, "file_id": file_id, "upload_url": self.url.replace("/api/", f"/upload/{file_id}")}
        if method == "files.completeUploadExternal":
            files = params.get("files")
            files = json.loads(files) if isinstance(files, str) else files or []
            with self._lock:
                for f in files:
                    if f.get("id") in self.uploads:
                        self.uploads[f["id"]] |= {"title": f.get("title"), "channel": params.get("channel_id"),
                                                  "thread_ts": params.get("thread_ts")}
            return {"ok": True, "files": [{"id": f.get("id"), "title": f.get("title")} for f in files]}
        if method == "views.open":
            return {"ok": True, "view": {"id": f"V{next(self._ts)}", "callback_id": params.get("view", {})}}
        if method == "apps.connections.open":  # Socket Mode: this fake has no WebSocket server to hand out
            return {"ok": False, "error": "invalid_auth"}
        return {"ok": False, "error": "unknown_method"}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                method = self.path.split("/api/", 1)[-1].split("?")[0]
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode(errors="replace")
                if self.path.startswith("/upload/"):  # the upload URL handed out by files.getUploadURLExternal
                    file_id = self.path.rsplit("/", 1)[-1]
                    with fake._lock:
                        if file_id in fake.uploads:
                            fake.uploads[file_id]["content"] = raw
                        else:
                            VIOLATIONS.append(f"upload: bytes sent to {self.path}, a URL this Slack never handed out")
                        fake.calls.append(Call("upload", {"file_id": file_id}, 200, raw=raw))
                    self.send_response(200 if file_id in fake.uploads else 404)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"OK")
                    return
                if "json" in (self.headers.get("Content-Type") or ""):
                    params = json.loads(raw or "{}")
                else:
                    params = {k: v[0] for k, v in parse_qs(raw).items()}
                    for key in ("blocks", "view"):
                        if isinstance(params.get(key), str):
                            params[key] = json.loads(params[key])
                with fake._lock:
                    queue = fake.failures.get(method) or []
                    failure = queue.pop(0) if queue else None
                status = failure[0] if failure else 200
                body = fake.answer(method, params) if status == 200 else {"ok": False, "error": "ratelimited"
                                                                         if status == 429 else "fatal_error"}
                if method in MESSAGE_METHODS:
                    VIOLATIONS.extend(payload_violations(method, params))
                with fake._lock:
                    VIOLATIONS.extend(fake.thread_violations(method, params))
                with fake._lock:
                    fake.calls.append(Call(method, params, status, raw=raw))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if failure and failure[1] is not None:
                    self.send_header("Retry-After", str(failure[1]))
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
