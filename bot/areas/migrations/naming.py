"""A migration request's name: shown in the approval message, so only letters, digits, `.`, `_`
and `-` (a backtick, a newline or `<!channel>` in a name would rewrite the message around it)."""
from __future__ import annotations

import re

from handlers.errors import UsageError

REQUEST_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_name(name: str | None) -> str:
    """`name` when it is a valid request name; else UsageError saying what a name may hold (the
    name itself is not echoed: it is what the message must not carry)."""
    if name is not None and REQUEST_NAME.fullmatch(name):
        return name
    raise UsageError("a migration's name is 1 to 64 letters, digits, `.`, `_` or `-` (no spaces), "
                     "e.g. add-notes-archived-flag")
