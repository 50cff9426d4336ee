"""A small client for the part of Render's public API (https://api.render.com/v1) dbops uses.

Built from Render's OpenAPI specification (a copy of the paths used is in tests/data). Every wait is
made through `sleep` and measured with `clock`, both injectable, so tests never wait for real.

What it never shows: the API key (a header only), anything from `connection-info`, and the query
of a download URL (Render's export links are signed). Errors carry the method, the path template
and the status, nothing else from the request.
"""
from __future__ import annotations

import email.utils
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import httpx

from .errors import RenderAuthError, RenderError, RenderNotFound, RenderUnavailable

PAGE_LIMIT = 100  # Render's maximum page size
_UNIT_BYTES = {"B": 1, "BYTES": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}

log = logging.getLogger("dbops.render")


class _NoQueryInUrls(logging.Filter):
    """httpx logs every request's full URL at INFO; an export's download URL is signed in its query,
    and whoever holds it can download the database. The query goes before the line is formatted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_without_query(a) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


def _without_query(url: httpx.URL) -> str:
    return str(url.copy_with(query=None)) + ("?(signed query hidden)" if url.query else "")


logging.getLogger("httpx").addFilter(_NoQueryInUrls())


@dataclass
class RetryPolicy:
    """How long to keep trying. Rate limits wait as long as Render says (plus jitter); server errors
    and network failures back off exponentially; both give up with a clear error in the end."""

    rate_limit_retries: int = 8
    rate_limit_max_wait_s: float = 120.0  # one wait never longer than this, whatever a header says
    server_retries: int = 4
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    jitter_s: float = 1.0  # added at random, so replicas that were throttled together retry apart


@dataclass
class ConnectionInfo:
    """What `connection-info` returns. A secret, all of it: no field may be shown; repr shows none."""

    password: str = field(repr=False)
    internal: str = field(repr=False)
    external: str = field(repr=False)
    psql_command: str = field(repr=False)

    def secrets(self) -> list[str]:
        return [s for s in (self.password, self.internal, self.external, self.psql_command) if s]


class RenderClient:
    def __init__(self, api_key: str, base_url: str, *, timeout_s: float = 30.0,
                 retry: RetryPolicy | None = None, sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = random.random) -> None:
        if not api_key:
            raise RenderAuthError("RENDER_API_KEY is not set: create an API key in the Render Dashboard "
                                  "(Account Settings > API Keys) and put it in the environment")
        if not all(33 <= ord(c) < 127 for c in api_key):
            # It goes into a header; httpx's error for it would quote the key.
            raise RenderAuthError("RENDER_API_KEY holds a space, a line break or a non-ASCII character, which no "
                                  "Render API key has (they start with rnd_): copy the key again")
        self._key = api_key
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.jitter = jitter  # 0..1, scaled by retry.jitter_s
        self._http = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
                                  headers={"Accept": "application/json", "User-Agent": "dbops"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RenderClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RenderClient(base_url={self.base_url!r})"

    @property
    def secrets(self) -> list[str]:
        return [self._key]

    # -- the endpoints ------------------------------------------------------------------
    def get_postgres(self, postgres_id: str) -> dict[str, Any]:
        return self._json("GET", "/postgres/{id}", postgres_id)

    def list_postgres(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        """Every Postgres instance the key's workspaces hold (each page as long as Render allows),
        optionally only those with one of `names`."""
        params: dict[str, Any] = {"includeReplicas": "false"}
        if names:
            params["name"] = ",".join(names)  # the spec: form style, explode false
        return [item["postgres"] for item in self._pages("/postgres", params)]

    def recovery_info(self, postgres_id: str) -> dict[str, Any]:
        return self._json("GET", "/postgres/{id}/recovery", postgres_id)

    def start_recovery(self, postgres_id: str, restore_time: datetime, name: str,
                       plan: str | None = None) -> dict[str, Any]:
        """Point-in-time recovery into a new instance; returns the new instance (postgresDetail).

        A POST is not retried after a server error or a lost answer: the instance may exist. The
        caller looks for it by name (`list_postgres([name])`) and deletes it."""
        body: dict[str, Any] = {"restoreTime": _iso(restore_time), "restoreName": name, "datadogApiKey": ""}
        if plan:
            body["plan"] = plan
        return self._json("POST", "/postgres/{id}/recovery", postgres_id, json=body, idempotent=False)

    def connection_info(self, postgres_id: str) -> ConnectionInfo:
        doc = self._json("GET", "/postgres/{id}/connection-info", postgres_id)
        return ConnectionInfo(password=str(doc.get("password") or ""),
                              internal=str(doc.get("internalConnectionString") or ""),
                              external=str(doc.get("externalConnectionString") or ""),
                              psql_command=str(doc.get("psqlCommand") or ""))

    def delete_postgres(self, postgres_id: str) -> bool:
        """True when deleted now, False when it was already gone (404)."""
        try:
            self._request("DELETE", "/postgres/{id}", postgres_id)
        except RenderNotFound:
            return False
        return True

    def disk_usage(self, postgres_id: str) -> int | None:
        """Bytes of disk the instance uses, by Render's disk-usage metric (its newest point in the last
        hour); None when the metric has nothing for it."""
        found = self._json("GET", "/metrics/disk-usage", None, params={"resource": _path_segment(postgres_id)})
        newest: tuple[str, int] | None = None
        for series in found if isinstance(found, list) else []:
            scale = _UNIT_BYTES.get(str(series.get("unit", "")).upper())
            for point in series.get("values") or [] if scale else []:
                when, value = str(point.get("timestamp", "")), point.get("value")
                if isinstance(value, (int, float)) and (newest is None or when > newest[0]):
                    newest = (when, int(value * scale))
        return newest[1] if newest else None

    def list_exports(self, postgres_id: str) -> list[dict[str, Any]]:
        """The instance's logical exports, newest first (Render keeps them 7 days)."""
        found = self._json("GET", "/postgres/{id}/export", postgres_id)
        if not isinstance(found, list):
            raise RenderError("Render's API answered GET /postgres/{id}/export with something other than a list")
        return sorted(found, key=lambda e: str(e.get("createdAt", "")), reverse=True)

    def download(self, url: str, dest: Path, max_bytes: int,
                 on_chunk: Callable[[bytes], None] | None = None) -> int:
        """Stream an export to `dest` (created 0600); refuses more than `max_bytes`. The URL is signed:
        it is never shown, only its host."""
        where = urlsplit(url).hostname or "the export URL"
        size = 0
        for attempt in range(self.retry.server_retries + 1):
            try:
                with self._http.stream("GET", url, timeout=httpx.Timeout(300.0, connect=10.0)) as answer:
                    if answer.status_code >= 500 and attempt < self.retry.server_retries:
                        self.sleep(self._backoff(attempt))
                        continue
                    if answer.status_code != 200:
                        raise RenderError(f"downloading the export from {where} failed: HTTP {answer.status_code}"
                                          + (" (the link expired: exports are kept 7 days)"
                                             if answer.status_code in (403, 404, 410) else ""))
                    size = 0
                    fd = _create_private(dest)
                    with open(fd, "wb") as out:
                        for chunk in answer.iter_bytes(1 << 20):
                            size += len(chunk)
                            if size > max_bytes:
                                raise RenderError(f"the export from {where} is larger than the limit of "
                                                  f"{max_bytes:,} bytes ([render] export_max_bytes)")
                            out.write(chunk)
                            if on_chunk:
                                on_chunk(chunk)
                    return size
            except httpx.TransportError as exc:
                if attempt >= self.retry.server_retries:
                    raise RenderUnavailable(f"downloading the export from {where} failed: "
                                            f"{type(exc).__name__}") from None
                self.sleep(self._backoff(attempt))
        raise RenderUnavailable(f"downloading the export from {where} kept failing")

    # -- plumbing -----------------------------------------------------------------------
    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            page_params = {**params, "limit": PAGE_LIMIT, **({"cursor": cursor} if cursor else {})}
            page = self._json("GET", path, None, params=page_params)
            if not isinstance(page, list):
                raise RenderError(f"Render's API answered GET {path} with something other than a list")
            yield from page
            if len(page) < PAGE_LIMIT or not page[-1].get("cursor"):
                return  # a short page is the last one
            cursor = page[-1]["cursor"]

    def _json(self, method: str, template: str, postgres_id: str | None, **kwargs: Any) -> Any:
        answer = self._request(method, template, postgres_id, **kwargs)
        try:
            return answer.json()
        except ValueError:
            raise RenderError(f"Render's API answered {method} {template} with something that is not JSON "
                              f"(HTTP {answer.status_code})") from None

    def _request(self, method: str, template: str, postgres_id: str | None, *, idempotent: bool | None = None,
                 **kwargs: Any) -> httpx.Response:
        idempotent = method in ("GET", "DELETE") if idempotent is None else idempotent
        path = template.replace("{id}", _path_segment(postgres_id)) if postgres_id is not None else template
        what = f"{method} {template}"
        limited = failures = 0
        headers = {"Authorization": f"Bearer {self._key}"}
        while True:
            try:
                answer = self._http.request(method, self.base_url + path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                if not idempotent or failures >= self.retry.server_retries:
                    raise RenderUnavailable(f"Render's API did not answer {what} ({_network_reason(exc)}) "
                                            f"after {failures + 1} tr{'y' if failures == 0 else 'ies'}: check the "
                                            f"network, RENDER_API_URL and status.render.com") from None
                self.sleep(self._backoff(failures))
                failures += 1
                continue
            status = answer.status_code
            if status < 400:
                return answer
            if status == 429:
                if limited >= self.retry.rate_limit_retries:
                    raise RenderUnavailable(f"Render's API kept rate-limiting {what} ({limited + 1} answers of 429): "
                                            f"another client may be using the same key heavily; try again later")
                wait = min(self.retry.rate_limit_max_wait_s, _rate_limit_wait(answer.headers))
                log.info("Render rate limit on %s: waiting %.1fs", what, wait)
                self.sleep(wait + self.jitter() * self.retry.jitter_s)
                limited += 1
                continue
            if status >= 500:
                if not idempotent or failures >= self.retry.server_retries:
                    raise RenderUnavailable(f"Render's API answered {what} with HTTP {status} after {failures + 1} "
                                            f"tr{'y' if failures == 0 else 'ies'}: Render may be having trouble "
                                            f"(status.render.com); try again later")
                self.sleep(self._backoff(failures))
                failures += 1
                continue
            raise _client_error(status, what, postgres_id, _message(answer))

    def _backoff(self, failures: int) -> float:
        base = min(self.retry.backoff_max_s, self.retry.backoff_base_s * (2 ** failures))
        return base + self.jitter() * self.retry.jitter_s


def _client_error(status: int, what: str, postgres_id: str | None, said: str) -> Exception:
    told = f" (Render says: {said})" if said else ""
    if status == 401:
        return RenderAuthError(f"Render refused the API key for {what} (HTTP 401){told}: check RENDER_API_KEY "
                               "(Account Settings > API Keys in the Render Dashboard; a revoked key fails like this)")
    if status == 403:
        return RenderAuthError(f"Render refused {what} (HTTP 403){told}: the API key's account has no access to "
                               "this instance's workspace; use a key of a member of that workspace, or check the "
                               "instance id")
    if status == 404:
        subject = f"the Postgres instance {postgres_id}" if postgres_id else "that resource"
        return RenderNotFound(f"Render has no {subject} (HTTP 404 for {what}): check RENDER_POSTGRES_ID or "
                              "[targets.NAME] render_postgres_id (it starts with dpg-) and that the API key belongs "
                              "to the instance's workspace")
    return RenderError(f"Render refused {what} (HTTP {status}){told}")


def _message(answer: httpx.Response) -> str:
    """Render's own error message, short; it describes our request, never a secret of ours."""
    try:
        doc = answer.json()
    except ValueError:
        return ""
    text = doc.get("message") if isinstance(doc, dict) else None
    return str(text)[:300] if text else ""


def _rate_limit_wait(headers: httpx.Headers) -> float:
    """Seconds to wait: Retry-After (seconds or an HTTP date), else Ratelimit-Reset (Render's counts
    the seconds down to the reset), else a minute."""
    retry_after = headers.get("Retry-After")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(retry_after)
                return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
            except (TypeError, ValueError):
                pass
    reset = headers.get("Ratelimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset))
        except ValueError:
            pass
    return 60.0


def _network_reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "could not connect"
    return type(exc).__name__


def _path_segment(value: str) -> str:
    """An instance id as one path segment: Render's ids are like dpg-abc123; anything else is refused
    rather than sent (a `/` or `..` would reach another endpoint)."""
    text = str(value)
    if not text or not all(c.isalnum() or c in "-_" for c in text):
        raise RenderError(f"{text!r} is not a Render instance id (they look like dpg-...)")
    return text


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _create_private(path: Path) -> int:
    import os

    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
