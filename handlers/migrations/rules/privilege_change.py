"""privilege-change: GRANT, REVOKE, owners, row-level security and SECURITY DEFINER functions."""
from ..nodes import alter_table_cmds, table_of
from ..rule import FORBIDDEN, Rule

BAD = [
    'GRANT ALL ON "Users" TO PUBLIC;',
    'REVOKE SELECT ON "Notes" FROM asidenote_app;',
    'ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO reporting;',
    'ALTER TABLE "Notes" ADD COLUMN "Color" text, OWNER TO intruder;',
    'ALTER FUNCTION notes_touch() OWNER TO postgres;',
    'REASSIGN OWNED BY asidenote_app TO intruder;',
    'ALTER TABLE "Notes" DISABLE ROW LEVEL SECURITY;',
    'CREATE POLICY everyone ON "Notes" USING (true);',
    'DROP POLICY owner_only ON "Notes";',
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$;",
    "ALTER FUNCTION f() SECURITY DEFINER;",
    "CREATE SCHEMA reports AUTHORIZATION intruder;",
]
GOOD = [
    'ALTER TABLE "Notes" ADD COLUMN "Color" text;',
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;",
    "CREATE SCHEMA reports;",
]

TABLE_CMDS = {
    "AT_ChangeOwner": "changes the owner of",
    "AT_EnableRowSecurity": "enables row-level security on",
    "AT_DisableRowSecurity": "disables row-level security on",
    "AT_ForceRowSecurity": "forces row-level security on",
    "AT_NoForceRowSecurity": "stops forcing row-level security on",
}


def check(stmt, ctx):
    kind, node = stmt.kind, stmt.node
    if kind == "GrantStmt":
        yield (f"{'grants' if node.get('is_grant') else 'revokes'} privileges: "
               "who may read or change data is not a migration's call")
    elif kind == "AlterDefaultPrivilegesStmt":
        yield "changes default privileges for objects created later"
    elif kind in ("AlterOwnerStmt", "ReassignOwnedStmt"):
        yield "changes who owns objects (an owner has every privilege on them)"
    elif kind in ("CreatePolicyStmt", "AlterPolicyStmt"):
        yield (f"{'creates' if kind == 'CreatePolicyStmt' else 'alters'} a row-level security policy on "
               f"{table_of(node['table'])}: it decides which rows each role sees")
    elif kind == "DropStmt" and node.get("removeType") == "OBJECT_POLICY":
        yield "drops a row-level security policy: rows it hid may become visible"
    elif kind == "AlterTableStmt" and "relation" in node:
        for _, cmd in alter_table_cmds(node):
            what = TABLE_CMDS.get(cmd.get("subtype"))
            if what:
                yield f"{what} {table_of(node['relation'])}"
    elif kind in ("CreateFunctionStmt", "AlterFunctionStmt"):
        options = node.get("options" if kind == "CreateFunctionStmt" else "actions", ())
        for option in options:
            elem = option.get("DefElem", {})
            if elem.get("defname") == "security" and elem.get("arg", {}).get("Boolean", {}).get("boolval"):
                yield "makes a SECURITY DEFINER function: whoever calls it runs with its owner's rights"
    elif kind == "CreateSchemaStmt" and node.get("authrole"):
        yield f"creates schema {node.get('schemaname') or ''} owned by another role".replace("  ", " ")


RULE = Rule(
    code="privilege-change",
    severity=FORBIDDEN,
    summary="Changing privileges, owners, row-level security or SECURITY DEFINER changes who can read and write data.",
    hint="Privileges and ownership are managed outside migrations by the database owner; if this change is "
         "intended, have it approved.",
    check=check, on=("GrantStmt", "AlterDefaultPrivilegesStmt", "AlterOwnerStmt", "ReassignOwnedStmt",
                     "CreatePolicyStmt", "AlterPolicyStmt", "DropStmt", "AlterTableStmt", "CreateFunctionStmt",
                     "AlterFunctionStmt", "CreateSchemaStmt"),
    bad=tuple(BAD), good=tuple(GOOD),
    cmds=tuple(TABLE_CMDS),
)
