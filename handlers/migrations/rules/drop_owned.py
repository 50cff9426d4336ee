"""drop-owned: DROP OWNED BY drops every table a role owns."""
from ..rule import FORBIDDEN, Rule

BAD = [
    "DROP OWNED BY asidenote_app;",
    "DROP OWNED BY CURRENT_USER CASCADE;",
]
GOOD = [
    'DROP TRIGGER IF EXISTS notes_touch ON "Notes";',
]


def check(stmt, ctx):
    yield "drops every object the role owns (its tables and their rows included) and revokes its privileges"


RULE = Rule(
    code="drop-owned",
    severity=FORBIDDEN,
    summary="DROP OWNED BY deletes every object a role owns in the database: for the app's role, every table.",
    hint="Drop the objects you mean by name, each checked on its own; manage roles outside migrations.",
    check=check, on=("DropOwnedStmt",), bad=tuple(BAD), good=tuple(GOOD),
)
