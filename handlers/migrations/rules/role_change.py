"""role-change: switching the session's role, or creating, altering or granting roles."""
from ..rule import FORBIDDEN, Rule

BAD = [
    "SET ROLE postgres;",
    "SET LOCAL ROLE postgres;",
    "SET SESSION AUTHORIZATION postgres;",
    "RESET ROLE;",
    "RESET SESSION AUTHORIZATION;",
    "CREATE ROLE intruder LOGIN PASSWORD 'x';",
    "ALTER ROLE asidenote_app SUPERUSER;",
    "ALTER USER asidenote_app SET search_path = evil;",
    "DROP ROLE reporting;",
    "GRANT pg_read_server_files TO asidenote_app;",
    "ALTER ROLE reporting RENAME TO auditors;",
]
GOOD = [
    "SET lock_timeout = '2s';",
    "RESET lock_timeout;",
]

_SESSION_ROLE = {"role", "session_authorization"}


def check(stmt, ctx):
    kind, node = stmt.kind, stmt.node
    if kind == "VariableSetStmt":
        name = (node.get("name") or "").lower()
        if name in _SESSION_ROLE:
            what = "resets" if node.get("kind") in ("VAR_RESET", "VAR_SET_DEFAULT") else "sets"
            yield (f"{what} the session's {name.replace('_', ' ')}: "
                   "the statements after it run with another role's rights")
    elif kind == "RenameStmt":
        if node.get("renameType") == "OBJECT_ROLE":
            yield "renames a role"
    else:
        yield {
            "CreateRoleStmt": "creates a role",
            "AlterRoleStmt": "alters a role (its attributes, password or membership)",
            "AlterRoleSetStmt": "changes a role's settings for its future sessions",
            "DropRoleStmt": "drops a role",
            "GrantRoleStmt": f"{'grants' if node.get('is_grant') else 'revokes'} role membership",
        }[kind]


RULE = Rule(
    code="role-change",
    severity=FORBIDDEN,
    summary="Changing roles or the session's role changes whose rights the migration and the app run with.",
    hint="Roles are managed outside migrations by the database owner; a migration runs as the role it is "
         "given. If this change is intended, have it approved.",
    check=check, on=("VariableSetStmt", "RenameStmt", "CreateRoleStmt", "AlterRoleStmt", "AlterRoleSetStmt",
                     "DropRoleStmt", "GrantRoleStmt"),
    bad=tuple(BAD), good=tuple(GOOD),
)
