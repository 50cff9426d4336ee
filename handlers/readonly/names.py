"""What a read-only role may be called. The name is still always quoted with `sql.Identifier`:
the check is for people (a clear refusal), the quoting is the guarantee."""
from __future__ import annotations

import re

from ..errors import UsageError

# Lower case, so the name is spelled the same quoted or not in the tools analysts type it into.
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Names PostgreSQL reserves or gives a meaning (CURRENT_USER, PUBLIC, ...), and the usual superusers.
RESERVED = frozenset({
    "public", "none", "current_user", "current_role", "session_user", "user", "all", "default",
    "postgres", "root", "admin", "rdsadmin", "render", "replication", "superuser",
})


def check_role_name(name: str) -> str:
    """`name` if it may be used for a new role; otherwise a UsageError saying why."""
    shown = name if len(name) <= 80 and name.isprintable() else repr(name[:80])
    if not isinstance(name, str) or not _ROLE_NAME.fullmatch(name):
        raise UsageError(f"`{shown}` is not a valid role name here: use 1 to 63 lower-case letters, digits and "
                         "underscores, starting with a letter or underscore (e.g. analytics_ro)")
    if name.startswith("pg_"):
        raise UsageError(f"`{name}` is reserved: PostgreSQL keeps names starting with pg_ for its own roles")
    if name in RESERVED:
        raise UsageError(f"`{name}` is reserved (a keyword or a system role's name): choose another, e.g. {name}_ro")
    return name
