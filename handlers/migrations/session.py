"""How a migration's statements reach a server: the one place the apply, the rehearsal and the
planner's row estimates send a requester's statement through.

- One analysed statement is one command, sent with the extended query protocol (Parse, Bind,
  Execute). The simple protocol (psycopg's choice for a query without parameters) runs every
  command the *server* finds in the text; the extended protocol refuses a text holding two
  ("cannot insert multiple commands into a prepared statement"), so a text the server splits
  differently from the analyser fails instead of running its hidden part. `binary=True` is what
  makes psycopg use it for a query without parameters (the simple protocol cannot return binary
  rows). The rows are never read; a statement returning aclitem or gtsvector, which have no
  binary form, fails.
- The settings that decide how the server reads SQL text are pinned to what the analyser assumes
  (lexing.py) before the first statement, and checked after every statement: a function or DO
  block can change them where the analyser cannot see. standard_conforming_strings and
  client_encoding are reported by the server after every command, so that check costs no round
  trip; backslash_quote and escape_string_warning can only make the server refuse a string or warn
  about one, never read it differently, so they are pinned but not re-read.
- The caller's timeouts are re-pinned after every statement that switched one off or raised it: the
  apply's lock_timeout and statement_timeout are the bot's, not the requester's (a shorter one the
  migration sets is kept).
"""
from __future__ import annotations

import psycopg

from .lexing import LEXING_SETTINGS
from .parsing import Statement

_REPORTED = ("standard_conforming_strings", "client_encoding")  # GUC_REPORT: sent with every change


class SessionChanged(Exception):
    """A statement changed how the server reads SQL text; nothing after it may run. `what` says
    which setting and its value now, e.g. "standard_conforming_strings is now off"."""

    def __init__(self, message: str, what: str) -> None:
        super().__init__(message)
        self.what = what


def pin_session(conn: psycopg.Connection) -> None:
    """Set the lexing settings for this session (before any statement of the migration)."""
    names = list(LEXING_SETTINGS)
    calls = ", ".join("set_config(%s, %s, false)" for _ in names)
    conn.execute(f"SELECT {calls}", [v for name in names for v in (name, LEXING_SETTINGS[name])])
    changed = lexing_changed(conn)
    if changed:
        raise SessionChanged(f"the session could not be pinned: {changed}", changed)


def execute(conn: psycopg.Connection, text: str) -> psycopg.Cursor:
    """Send `text`, one analysed statement, as one command with the extended protocol (see the module
    docstring)."""
    cursor = conn.cursor()
    cursor.execute(text, binary=True)
    return cursor


def lexing_changed(conn: psycopg.Connection) -> str | None:
    """What no longer holds, e.g. "standard_conforming_strings is now off"; None when all hold."""
    for name in _REPORTED:
        value = conn.info.parameter_status(name)
        if value is None or value.lower() != LEXING_SETTINGS[name].lower():
            return f"{name} is now {value or 'unknown'}"
    return None


def run_statement(conn: psycopg.Connection, stmt: Statement, limits: dict[str, float],
                  local: bool) -> tuple[psycopg.Cursor, list[str]]:
    """Run one statement, then check the session (see the module docstring). `limits` are the
    caller's timeouts in seconds, by setting name; `local` re-pins them for the transaction only.
    Returns the cursor and the names of the limits the statement had switched off or raised.
    Raises psycopg.Error when the statement fails, SessionChanged when it changed how the server
    reads SQL text."""
    cursor = execute(conn, stmt.text)
    changed = lexing_changed(conn)
    if changed:
        raise SessionChanged(f"line {stmt.line} changed how the server reads SQL text ({changed}); dbops stopped "
                             "there: a migration may not change standard_conforming_strings or client_encoding",
                             changed)
    return cursor, repin_limits(conn, limits, local)


def repin_limits(conn: psycopg.Connection, limits: dict[str, float], local: bool) -> list[str]:
    """Set again each of `limits` that is now off (0) or longer than the caller's: one cheap read per
    statement (current_setting, not the pg_settings view), and a write only when one was changed."""
    if not limits:
        return []
    names = list(limits)
    now = conn.execute("SELECT " + ", ".join("current_setting(%s)" for _ in names), names).fetchone()
    changed = [name for name, value in zip(names, now) if not 0 < _as_ms(value) <= milliseconds(limits[name])]
    for name in changed:
        conn.execute("SELECT set_config(%s, %s, %s)", (name, f"{milliseconds(limits[name])}ms", local))
    return changed


_UNITS_MS = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}


def _as_ms(value: str) -> float:
    """A time setting as current_setting shows it ("0", "250ms", "5s", "15min") in milliseconds; -1 when
    it cannot be read (re-pinned then)."""
    digits = value.rstrip("abcdefghijklmnopqrstuvwxyz")
    try:
        return float(digits) * _UNITS_MS[value[len(digits):] or "ms"]
    except (KeyError, ValueError):
        return -1


def milliseconds(seconds: float) -> int:
    """A timeout setting's value: at least 1 ms (0 would switch it off)."""
    return max(1, int(seconds * 1000))
