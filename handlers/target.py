"""A database the bot looks after, and safe ways to connect to it and to name it."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import ConfigError, TargetUnreachable

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


def connection_password(dsn: str) -> str | None:
    """The password libpq reads in a connection string (None: none, or not readable)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        return None
    return str(password) if password else None


def dsn_secrets(dsn: str) -> list[str]:
    """The parts of a connection string that must never be shown: the whole of it, the password as
    libpq reads it, and every piece of its URL's user-info after the user name, as written and
    decoded (an unencoded `@`, `:` or `/` in a password makes readers cut it in different places)."""
    password = connection_password(dsn)
    return [dsn, *([password] if password else []), *_user_info_pieces(dsn)]


_URL_SCHEMES = ("postgresql://", "postgres://")


def _user_info_pieces(dsn: str) -> list[str]:
    if not dsn.startswith(_URL_SCHEMES):
        return []
    rest = dsn.split("://", 1)[1]
    user_info = rest.rpartition("@")[0]  # up to the last `@` anywhere: the widest any reader may take
    hidden = user_info.partition(":")[2]
    pieces = [hidden, *re.split(r"[:@/?#]", hidden)] if hidden else []
    return [form for piece in pieces if piece for form in dict.fromkeys((piece, unquote(piece)))]


def _libpq_reading(dsn: str) -> dict[str, str]:
    from psycopg.conninfo import conninfo_to_dict

    return {k: str(v) for k, v in conninfo_to_dict(dsn).items() if k in _COMPARED or k == "port"}


_COMPARED = ("user", "password", "host", "dbname")
_PORTS = re.compile(r"^\d*(,\d*)*$")


def _url_reading(dsn: str) -> dict[str, str]:
    url = urlsplit(dsn)
    found = {"user": url.username, "password": url.password, "dbname": url.path[1:]}
    if "," not in url.netloc.rpartition("@")[2]:  # a list of hosts is libpq's own: a URL parser cannot read it
        found["host"] = url.hostname
    found = {k: unquote(v) for k, v in found.items() if v}
    return found | {k: v for k, v in parse_qsl(url.query) if k in _COMPARED}


def _read_differently(libpq: dict[str, str], url: dict[str, str]) -> bool:
    if not _PORTS.match(libpq.get("port", "")) or "@" in libpq.get("host", "") + libpq.get("dbname", ""):
        return True  # a piece of a password read as a port, a host or a database name
    keys = (set(libpq) | set(url)) & set(_COMPARED if "host" in url else _COMPARED[:2] + _COMPARED[3:])
    return any((libpq.get(k) or "").lower() != (url.get(k) or "").lower() if k == "host"
               else libpq.get(k) != url.get(k) for k in keys)


def check_connection_string(variable: str, value: str) -> None:
    """Refuses a connection string that libpq and a URL parser read differently (an unencoded `@`,
    `:`, `/`, `?` or `#` in the password): some reader would take part of the password for a host,
    a port or a database name and show it. The message names the variable, never its content."""
    import psycopg

    try:
        libpq = _libpq_reading(value)
    except psycopg.ProgrammingError:
        raise ConfigError(f"{variable} is not a connection string libpq can read: give one like "
                          "postgresql://user:password@host:5432/dbname") from None
    if not value.startswith(_URL_SCHEMES):
        return
    try:
        differs = _read_differently(libpq, _url_reading(value))
    except ValueError:
        differs = True
    if differs:
        raise ConfigError(f"{variable} is read differently by libpq and by a URL parser: its user name or password "
                          "holds a character a URL reserves (`@`, `:`, `/`, `?`, `#`). Percent-encode them (`@` "
                          "as %40, `:` as %3A, `/` as %2F, `?` as %3F, `#` as %23) and start again")


# Secrets the process makes while it runs (a generated password, while it is being handed over):
# every `scrub` removes them too, whatever list of secrets its caller holds.
_HELD: list[str] = []


def hold(secret: str) -> None:
    """Scrubbed everywhere from now on, until `release`."""
    _HELD.append(secret)


def release(secret: str) -> None:
    if secret in _HELD:
        _HELD.remove(secret)


# Shorter values are not scrubbed (every "a" or "id" in a message would be): a secret this short is
# refused at start instead (environment.secret_problem).
SHORTEST_SECRET = 4


def scrub(text: str, secrets: list[str]) -> str:
    """`text` with every secret replaced by ***. Works on the text as it will be shown: scrub a
    payload's string values before it is serialised (see `scrub_data`), never its JSON, where a
    secret containing `"`, `\\` or non-ASCII characters is spelled differently."""
    for secret in sorted((s for s in [*secrets, *list(_HELD)] if s and len(s) >= SHORTEST_SECRET), key=len,
                         reverse=True):
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
