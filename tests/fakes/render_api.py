"""A fake Render API: a real HTTP server on 127.0.0.1 following the spec's postgres paths and shapes.

Every response body is validated against the spec's schema for that path, method and status
(tests/data/render-openapi.json, a copy of Render's specification); a mismatch is recorded in
`schema_errors`, which the tests' fixture requires to be empty. Request bodies are validated too.

It moves a recovery instance from `creating` to `available` after `available_after_polls` reads
of it (never, with None) and then asks `make_copy(instance)` for the DSN of a real database holding
the restored copy; DELETE calls `drop_copy(instance)`. Faults: `fail_next` (any status, headers),
`hang_next` (no answer until the server stops), `delete_failures`.
"""
from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import jsonschema
from psycopg.conninfo import conninfo_to_dict
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SPEC_PATH = Path(__file__).resolve().parent.parent / "data" / "render-openapi.json"
SPEC = json.loads(SPEC_PATH.read_text())
_URI = "urn:render-openapi"
_REGISTRY = Registry().with_resource(_URI, Resource.from_contents(SPEC, default_specification=DRAFT4))

_ROUTES = [(re.compile("^" + re.sub(r"\{[^}]+\}", r"(?P<id>[^/]+)", path) + "$"), path) for path in SPEC["paths"]]


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _resolve(node: dict) -> tuple[dict, str]:
    """Follow a $ref in the spec; (the node, its pointer)."""
    pointer = ""
    while "$ref" in node:
        pointer = node["$ref"]
        node = SPEC
        for part in pointer[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node, pointer


def schema_errors_for(instance: Any, pointer: str) -> list[str]:
    """Validation errors of `instance` against the schema at `pointer` in the spec (OpenAPI 3.0 is close
    enough to draft 4 for the subset used: no nullable, no discriminator in these paths)."""
    validator = jsonschema.Draft4Validator({"$ref": _URI + pointer}, registry=_REGISTRY)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(instance)]


def response_pointer(template: str, method: str, status: int) -> str | None:
    op = SPEC["paths"][template][method.lower()]
    response = op["responses"].get(str(status))
    if response is None:
        return "missing"
    response, ref = _resolve(response)
    if "content" not in response:
        return None
    base = ref or _pointer("paths", template, method.lower(), "responses", str(status))
    return base + "/content/application~1json/schema"


def request_pointer(template: str, method: str) -> str | None:
    op = SPEC["paths"][template][method.lower()]
    if "requestBody" not in op:
        return None
    return _pointer("paths", template, method.lower(), "requestBody", "content", "application/json", "schema")


@dataclass
class Seen:
    method: str
    path: str
    template: str | None
    query: dict[str, list[str]]
    authorized: bool
    body: Any = None
    status: int = 0


@dataclass
class Fault:
    method: str
    template: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


class FakeRender:
    def __init__(self, api_key: str, make_copy: Callable[[dict], str] | None = None,
                 drop_copy: Callable[[dict], None] | None = None) -> None:
        self.api_key = api_key
        self.make_copy, self.drop_copy = make_copy, drop_copy
        self.instances: dict[str, dict[str, Any]] = {}  # id -> postgresDetail
        self.recovery: dict[str, dict[str, Any]] = {}
        self.exports: dict[str, list[dict[str, Any]]] = {}
        self.downloads: dict[str, bytes] = {}
        self.disk_used_gb: dict[str, float] = {}  # instance id -> what its disk-usage metric says
        self.copies: dict[str, str] = {}  # instance id -> DSN of its restored copy
        self.polls: dict[str, int] = {}
        self.available_after_polls: int | None = 2
        self.recovery_answer_lost = False  # the recovery instance is made, but the answer is a 500
        self.delete_failures = 0  # DELETEs answered 500 before one succeeds (-1: forever)
        self.faults: list[Fault] = []
        self.hangs = 0
        self.seen: list[Seen] = []
        self.schema_errors: list[str] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> "FakeRender":
        self.thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    # -- test set-up ---------------------------------------------------------------
    def add_instance(self, name: str, plan: str = "basic_1gb", recovery: str = "AVAILABLE",
                     window: timedelta | None = timedelta(days=3, hours=2), status: str = "available",
                     **extra: Any) -> dict[str, Any]:
        with self._lock:
            return self._add(name, plan, recovery, window, status, **extra)

    def _add(self, name, plan, recovery, window, status, **extra) -> dict[str, Any]:
        pid = f"dpg-fake{next(self._ids):04d}a"
        now = _now()
        doc = {"id": pid, "ipAllowList": [], "createdAt": _iso(now - timedelta(days=30)), "updatedAt": _iso(now),
               "dashboardUrl": f"https://dashboard.render.com/d/{pid}", "databaseName": "asidenote",
               "databaseUser": "asidenote", "highAvailabilityEnabled": False, "name": name,
               "owner": {"id": "tea-fake", "name": "Asidenote", "email": "ops@example.com", "type": "team"},
               "plan": plan, "region": "frankfurt", "readReplicas": [], "role": "primary", "status": status,
               "version": "18", "suspended": "not_suspended", "suspenders": [], "diskAutoscalingEnabled": False,
               "diskSizeGB": 15, **extra}
        self.instances[pid] = doc
        self.recovery[pid] = {"recoveryStatus": recovery}
        if window is not None:
            self.recovery[pid]["startsAt"] = _iso(now - window)
        self.exports[pid] = []
        return doc

    def add_export(self, pid: str, content: bytes, age: timedelta = timedelta(hours=6)) -> dict[str, Any]:
        with self._lock:
            token = f"x{next(self._ids)}"
            self.downloads[token] = content
            host = f"http://127.0.0.1:{self.server.server_address[1]}"
            export = {"id": f"exp-{token}", "createdAt": _iso(_now() - age),
                      "url": f"{host}/downloads/{token}?X-Amz-Signature=s1gn3d{token}secret"}
            self.exports[pid].append(export)
            return export

    def fail_next(self, method: str, template: str, status: int, times: int = 1, **headers: str) -> None:
        with self._lock:
            self.faults += [Fault(method, template, status, dict(headers))] * times

    def hang_next(self, times: int = 1) -> None:
        with self._lock:
            self.hangs += times

    def requests_to(self, method: str, template: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.method == method and s.template == template]

    # -- the server ----------------------------------------------------------------
    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._serve(self, "GET")

            def do_POST(self) -> None:
                fake._serve(self, "POST")

            def do_DELETE(self) -> None:
                fake._serve(self, "DELETE")

        return Handler

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        if parts.path.startswith("/downloads/"):
            return self._download(h, parts.path.rsplit("/", 1)[-1])
        path = parts.path.removeprefix("/v1")
        template, pid = None, None
        for pattern, tmpl in _ROUTES:
            m = pattern.match(path)
            if m:
                template, pid = tmpl, m.groupdict().get("id")
                break
        body = json.loads(raw) if raw else None
        seen = Seen(method, path, template, parse_qs(parts.query),
                    h.headers.get("Authorization") == f"Bearer {self.api_key}", body)
        with self._lock:
            self.seen.append(seen)
            hang = self.hangs > 0
            if hang:
                self.hangs -= 1
        if hang:
            self._release.wait(60)
            return
        status, doc, headers = self._answer(method, template, pid, seen)
        seen.status = status
        if template is not None and method.lower() in SPEC["paths"][template]:
            pointer = response_pointer(template, method, status)
            if pointer == "missing":
                self.schema_errors.append(f"{method} {template}: status {status} is not in the spec")
            elif pointer is not None:
                self.schema_errors += [f"{method} {template} {status}: {e}" for e in schema_errors_for(doc, pointer)]
        data = b"" if doc is None else json.dumps(doc).encode()
        h.send_response(status)
        for key, value in headers.items():
            h.send_header(key, value)
        if doc is not None:
            h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _download(self, h: BaseHTTPRequestHandler, token: str) -> None:
        content = self.downloads.get(token)
        h.send_response(200 if content is not None else 404)
        h.send_header("Content-Length", str(len(content or b"")))
        h.end_headers()
        h.wfile.write(content or b"")

    def _answer(self, method: str, template: str | None, pid: str | None,
                seen: Seen) -> tuple[int, Any, dict[str, str]]:
        if template is None:
            return 404, {"message": "not found"}, {}
        if not seen.authorized:
            return 401, {"id": "unauthorized", "message": "invalid API key"}, {}
        with self._lock:
            for i, fault in enumerate(self.faults):
                if fault.method == method and fault.template == template:
                    del self.faults[i]
                    return fault.status, {"message": f"fake fault {fault.status}"}, fault.headers
            if pid is not None and pid not in self.instances:
                return 404, {"id": "not_found", "message": "Postgres instance not found"}, {}
            return self._route(method, template, pid, seen)

    def _route(self, method, template, pid, seen) -> tuple[int, Any, dict[str, str]]:
        if (method, template) == ("GET", "/postgres"):
            return 200, self._list(seen.query), {}
        if (method, template) == ("GET", "/postgres/{postgresId}"):
            return 200, self._poll(pid), {}
        if (method, template) == ("DELETE", "/postgres/{postgresId}"):
            if self.delete_failures != 0:
                self.delete_failures -= 1 if self.delete_failures > 0 else 0
                return 500, {"message": "internal error"}, {}
            doc = self.instances.pop(pid)
            if pid in self.copies and self.drop_copy:
                self.drop_copy(doc)
            self.copies.pop(pid, None)
            return 204, None, {}
        if (method, template) == ("GET", "/postgres/{postgresId}/recovery"):
            return 200, self.recovery[pid], {}
        if (method, template) == ("POST", "/postgres/{postgresId}/recovery"):
            return self._recover(pid, seen.body)
        if (method, template) == ("GET", "/postgres/{postgresId}/connection-info"):
            if pid not in self.copies:
                return 400, {"message": "the instance is not available yet"}, {}
            dsn = self.copies[pid]
            password = str(conninfo_to_dict(dsn).get("password") or "")
            return 200, {"password": password, "internalConnectionString": dsn, "externalConnectionString": dsn,
                         "psqlCommand": f"psql {dsn}"}, {}
        if (method, template) == ("GET", "/postgres/{postgresId}/export"):
            return 200, self.exports[pid], {}
        if (method, template) == ("GET", "/metrics/disk-usage"):
            resource = seen.query.get("resource", [""])[0]
            if resource not in self.disk_used_gb:
                return 200, [], {}
            return 200, [{"labels": [{"field": "resource", "value": resource}], "unit": "GB",
                          "values": [{"timestamp": _iso(_now() - timedelta(minutes=m)), "value": value, "unit": "GB"}
                                     for m, value in ((10, self.disk_used_gb[resource] * 0.99),
                                                      (1, self.disk_used_gb[resource]))]}], {}
        return 405, {"message": "not in this fake"}, {}

    def _list(self, query: dict[str, list[str]]) -> list[dict]:
        limit = int(query.get("limit", ["20"])[0])
        assert 1 <= limit <= 100, limit
        names = set(query["name"][0].split(",")) if "name" in query else None
        items = [d for d in self.instances.values() if names is None or d["name"] in names]
        if "cursor" in query:
            ids = [d["id"] for d in items]
            after = ids.index(query["cursor"][0].removeprefix("cur-")) + 1
            items = items[after:]
        keys = [k for k in SPEC["components"]["schemas"]["postgres"]["properties"]]
        return [{"postgres": {k: d[k] for k in keys if k in d}, "cursor": f"cur-{d['id']}"} for d in items[:limit]]

    def _poll(self, pid: str) -> dict:
        doc = self.instances[pid]
        if doc["status"] == "creating":
            self.polls[pid] = self.polls.get(pid, 0) + 1
            if self.available_after_polls is not None and self.polls[pid] >= self.available_after_polls:
                if self.make_copy:
                    self.copies[pid] = self.make_copy(doc)
                doc["status"] = "available"
        return doc

    def _recover(self, pid: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        pointer = request_pointer("/postgres/{postgresId}/recovery", "POST")
        problems = schema_errors_for(body, pointer)
        if problems:
            self.schema_errors += [f"POST recovery body: {p}" for p in problems]
            return 400, {"message": "; ".join(problems)}, {}
        source = self.instances[pid]
        when = datetime.fromisoformat(body["restoreTime"].replace("Z", "+00:00"))
        starts = self.recovery[pid].get("startsAt")
        if self.recovery[pid]["recoveryStatus"] != "AVAILABLE" or (
                starts and when < datetime.fromisoformat(starts.replace("Z", "+00:00"))) or when > _now():
            return 400, {"message": "restoreTime is outside the recovery window"}, {}
        doc = self._add(body.get("restoreName") or f"{source['name']}-recovery", body.get("plan") or source["plan"],
                        "BACKUP_NOT_READY", None, "creating")
        self.polls[doc["id"]] = 0
        if self.recovery_answer_lost:
            return 500, {"message": "internal error"}, {}
        return 200, doc, {}

