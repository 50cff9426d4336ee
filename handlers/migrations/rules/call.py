"""call: CALL runs a procedure whose body this check cannot see."""
from ..nodes import function_name
from ..rule import FORBIDDEN, Rule

BAD = [
    "CALL archive_old_notes();",
    'CALL public."Cleanup"(30);',
]
GOOD = [
    "CREATE PROCEDURE archive_old_notes() LANGUAGE sql AS $$ SELECT 1 $$;",
]


def check(stmt, ctx):
    schema, name = function_name(stmt.node.get("funccall", {}))
    label = f"{schema}.{name}" if schema else name
    yield f"calls the procedure {label}(): its body (and any dynamic SQL in it) is not checked"


RULE = Rule(
    code="call",
    severity=FORBIDDEN,
    summary="A procedure can run any statement, including ones this check forbids, and commit on its own.",
    hint="Put the procedure's statements in the migration as plain SQL so they are checked, or have it approved.",
    check=check, on=("CallStmt",), bad=tuple(BAD), good=tuple(GOOD),
)
