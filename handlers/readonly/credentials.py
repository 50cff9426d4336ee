"""A read-only role's password: generated, sent to the server only as a SCRAM verifier (so the
plain password is in no statement text, server log or pg_stat_statements), and handed over once
in a `Delivery` that lives beside the report, never inside it."""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

PASSWORD_BYTES = 32  # token_urlsafe: 43 characters of [A-Za-z0-9_-], safe in any connection string
# What of the bot's own connection string an analyst's may keep: where the server is and how to
# reach it safely. Not the bot's password, passfile, client certificate or service file.
_SHAREABLE = ("host", "hostaddr", "port", "dbname", "sslmode", "sslrootcert", "target_session_attrs",
              "connect_timeout")


def new_password() -> str:
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    assert len(password) >= 32
    return password


def scram_verifier(conn: psycopg.Connection, role: str, password: str) -> str:
    """The SCRAM-SHA-256 verifier libpq computes (as psql's \\password does); the server stores it as is."""
    return conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()


def role_conninfo(target_dsn: str, role: str, password: str) -> str:
    """The target's connection string with the role's name and password instead of the bot's."""
    parts = {k: v for k, v in conninfo_to_dict(target_dsn).items() if k in _SHAREABLE}
    return make_conninfo("", **parts, user=role, password=password)


def role_url(target_dsn: str, role: str, password: str) -> str:
    """The same as a postgresql:// URL, the form most analytics tools take."""
    parts = {k: str(v) for k, v in conninfo_to_dict(target_dsn).items() if k in _SHAREABLE}
    host = parts.pop("host", "")
    port = parts.pop("port", "")
    dbname = parts.pop("dbname", "")
    query = dict(parts)
    netloc_host = ""
    if host.startswith("/") or "," in host:
        query["host"] = host  # a Unix socket folder (or several hosts) goes in the query
    else:
        netloc_host = f"[{host}]" if ":" in host else host
    netloc = (f"{quote(role, safe='')}:{quote(password, safe='')}@{netloc_host}"
              + (f":{port}" if port and netloc_host else ""))
    if port and not netloc_host:
        query["port"] = port
    tail = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
    return f"postgresql://{netloc}/{quote(dbname, safe='')}" + (f"?{tail}" if tail else "")


@dataclass
class Delivery:
    """The one hand-over of a role's credentials: the front end shows it to the requester only
    (Slack: ephemeral or direct message; terminal: stdout) and then drops it."""

    role: str
    target: str
    url: str = field(repr=False)
    password: str = field(repr=False)

    def text(self) -> str:
        return (f"Connection string for read-only role `{self.role}` on `{self.target}` (shown once, only to you; "
                f"store it in your password manager or your tool's secret settings):\n{self.url}")

    def secrets(self) -> list[str]:
        return [self.password, self.url, quote(self.password, safe="")]

    def __str__(self) -> str:  # a stray f-string or log line shows no secret
        return f"Delivery(role={self.role!r}, target={self.target!r})"
