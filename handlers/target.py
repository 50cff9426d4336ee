"""A database the bot looks after, and safe ways to connect to it and to name it."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import TargetUnreachable

# psycopg is imported in the functions that read or open a connection string: commands that never
# touch a database (`dbops --help`, `dbops migrate check`) do not load it.
if TYPE_CHECKING:
    import psycopg

@dataclass(frozen=True)
class Target:
    name: str
    dsn: str  # a secret: never shown; use `label`

    @property
    def label(self) -> str:
        return describe_dsn(self.dsn)

    def connect(self, **kwargs) -> psycopg.Connection:
        return connect(self.dsn, name=self.name, **kwargs)

    def __repr__(self) -> str:  # keeps the DSN out of tracebacks and logs
        return f"Target(name={self.name!r}, at={self.label!r})"


def describe_dsn(dsn: str) -> str:
    """host/database only: what may be shown of a connection string."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(unparseable connection string)"
    host = parts.get("host") or "localhost"
    if host.startswith("/"):
        host = "local socket"
    port = f":{parts['port']}" if parts.get("port") and not str(host).startswith("local") else ""
    return f"{host}{port}/{parts.get('dbname') or parts.get('user') or ''}"


def dsn_secrets(dsn: str) -> list[str]:
    """The parts of a connection string that must never be shown."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    secrets = [dsn]
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        password = None
    if password:
        secrets.append(str(password))
    try:
        netloc_password = urlsplit(dsn).password
        if netloc_password:
            secrets.append(netloc_password)
    except ValueError:
        pass
    return secrets


# Secrets the process makes while it runs (a generated password, while it is being handed over):
# every `scrub` removes them too, whatever list of secrets its caller holds.
_HELD: list[str] = []


def hold(secret: str) -> None:
    """Scrubbed everywhere from now on, until `release`."""
    _HELD.append(secret)


def release(secret: str) -> None:
    if secret in _HELD:
        _HELD.remove(secret)


def scrub(text: str, secrets: list[str]) -> str:
    """`text` with every secret replaced by ***. Works on the text as it will be shown: scrub a
    payload's string values before it is serialised (see `scrub_data`), never its JSON, where a
    secret containing `"`, `\\` or non-ASCII characters is spelled differently."""
    for secret in sorted((s for s in [*secrets, *list(_HELD)] if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def scrub_data(value: Any, secrets: list[str], keep: frozenset[str] = frozenset()) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings, numbers) with every string value scrubbed.
    Keys are the program's own names and are kept as they are, and so are the values of the keys in
    `keep` (identifiers and enums such as a block's "type"), so a secret that happens to equal a
    word of the format (a password `text`: "plain_text") cannot corrupt the payload."""
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {key: item if key in keep and isinstance(item, str) else scrub_data(item, secrets, keep)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_data(item, secrets, keep) for item in value]
    return value


_AFTER_FAILED = re.compile(r"^.*failed:\s*", re.S)


def connect(dsn: str, name: str = "database", connect_timeout: int = 10, **kwargs) -> psycopg.Connection:
    """Connect, turning failures into `TargetUnreachable` with a short, secret-free reason."""
    import psycopg

    try:
        return psycopg.connect(dsn, connect_timeout=connect_timeout, **kwargs)
    except psycopg.OperationalError as exc:
        # Where it tried (host and database, never the user or password): "connection refused" alone
        # does not say which of several hosts, or a wrong one, was meant.
        raise TargetUnreachable(f"target `{name}` ({describe_dsn(dsn)}) is unreachable: "
                                f"{connection_reason(exc, dsn)}") from None
    except psycopg.ProgrammingError as exc:
        raise TargetUnreachable(f"target `{name}` has a malformed connection string: "
                                f"{scrub(str(exc), dsn_secrets(dsn))}") from None


def connection_reason(exc: Exception, dsn: str) -> str:
    # libpq says "connection to server at "h" (ip), port p failed: Connection refused\n\tIs the
    # server running...": the reason is what follows the last "failed:" on the first line.
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = _AFTER_FAILED.sub("", lines[0]) if lines else type(exc).__name__
    return scrub(text.lower() if text[:1].isupper() and text[1:2].islower() else text, dsn_secrets(dsn))
