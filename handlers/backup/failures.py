"""Why a backup failed, in words a person can act on, without a secret of the target's."""
from __future__ import annotations

import psycopg

from ..errors import DbopsError
from ..postgres import last_line
from ..target import Target, dsn_secrets, scrub


def failure_message(exc: BaseException, target: Target) -> str:
    if isinstance(exc, DbopsError):
        text = str(exc)
    elif isinstance(exc, psycopg.errors.LockNotAvailable):
        text = (f"a table of `{target.name}` stayed locked longer than backup.lock_wait_seconds "
                f"(a long migration or a stuck transaction?): {last_line(str(exc))}")
    elif isinstance(exc, psycopg.OperationalError):
        text = f"lost the connection to target `{target.name}`: {last_line(str(exc))}"
    elif isinstance(exc, psycopg.Error):
        text = f"the database refused a query: {last_line(str(exc))}"
    elif isinstance(exc, OSError):
        text = f"{exc.strerror or exc} ({exc.filename})" if exc.filename else str(exc)
    elif isinstance(exc, KeyboardInterrupt):
        text = "interrupted"
    else:
        text = f"unexpected error: {type(exc).__name__}"
    return scrub(text, dsn_secrets(target.dsn))
