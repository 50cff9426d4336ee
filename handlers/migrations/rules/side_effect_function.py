"""side-effect-function: a call of a function not known to be harmless.

Functions can do anything: end other sessions (pg_terminate_backend), write files (lo_export),
read them (pg_read_file), run SQL handed to them as text on this server (query_to_xml) or
another (dblink_exec), change settings or roles (set_config). Every call anywhere in a
statement counts (SELECT lists, WHERE clauses, defaults, CHECK constraints, index expressions,
view definitions: all of them run the function), unless the function is on the list in
handlers/migrations/harmless.py. Function bodies (CREATE FUNCTION) are not calls.
"""
from ..harmless import SAFE_FUNCTIONS, SAFE_SETTINGS
from ..nodes import const_value, find_nodes, function_name, strings
from ..rule import FORBIDDEN, Rule

BAD = [
    'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database();',
    "SELECT lo_export(16400, '/tmp/notes');",
    "SELECT pg_read_file('/etc/passwd');",
    "SELECT dblink_exec('host=elsewhere', 'DROP TABLE \"Notes\"');",
    "SELECT query_to_xml('DELETE FROM \"Notes\" RETURNING 1', true, true, '');",
    "SELECT set_config('role', 'postgres', false);",
    "SELECT setval('\"Notes_Id_seq\"', 1);",
    'SELECT public.lower(\'x\');  -- a lower() outside pg_catalog is not the built-in',
    "CREATE FUNCTION lower(int) RETURNS int LANGUAGE sql AS $$ DELETE FROM \"Notes\" RETURNING 1 $$;\n"
    "SELECT lower(1);",
    'ALTER TABLE "Notes" ADD COLUMN "Gone" boolean DEFAULT pg_terminate_backend(1);',
    'CREATE VIEW v AS SELECT pg_cancel_backend(pid) FROM pg_stat_activity;',
    'DELETE FROM "Notes" WHERE "Id" = 1 AND pg_notify(\'x\', \'y\') IS NULL;',
]
GOOD = [
    "SELECT set_config('lock_timeout', '5s', false);",
    'UPDATE "Users" SET "Email" = lower("Email") WHERE "Id" = 7;',
    'ALTER TABLE "Notes" ADD COLUMN "Uid" uuid DEFAULT gen_random_uuid();',
    'CREATE INDEX CONCURRENTLY "IX_Notes_Title" ON "Notes" (lower("Title"));',
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT pg_terminate_backend(1)::int $$;",
]


def check(ctx):
    defined = ctx.defined_functions
    for stmt in ctx.statements:
        if stmt.kind == "CreateFunctionStmt":
            continue  # a definition runs nothing; calling it is what counts
        for call in ctx.nested(stmt).get("FuncCall", ()):
            reason = _not_harmless(call, defined)
            if reason:
                yield stmt, reason
        if defined:
            yield from ((stmt, r) for r in _attribute_calls(stmt, defined))


def _not_harmless(call, defined) -> str | None:
    schema, name = function_name(call)
    label = f"{schema}.{name}()" if schema else f"{name}()"
    if name in defined:
        return f"calls {label}, which this file defines: its body is not checked"
    if schema is not None:
        return f"calls {label}: a function outside pg_catalog can do anything"
    if name == "set_config":
        args = call.get("args", ())
        setting = const_value(args[0]) if args else None
        if isinstance(setting, str) and setting.lower() in SAFE_SETTINGS:
            return None
        return f"calls set_config() on {setting!r}: only timeouts and formatting settings may be changed without review"
    if name not in SAFE_FUNCTIONS:
        return f"calls {label}, which is not on the list of functions known to have no side effects"
    return None


def _attribute_calls(stmt, defined):
    """`t.f` calls the function f(t) when t has no column f: PostgreSQL's attribute notation."""
    for _, ref in find_nodes({stmt.kind: stmt.node}, frozenset({"ColumnRef"})):
        fields = strings(ref.get("fields"))
        if len(fields) >= 2 and fields[-1] in defined:
            yield f"may call {fields[-1]}() (attribute notation {'.'.join(fields)}), which this file defines"


RULE = Rule(
    code="side-effect-function",
    severity=FORBIDDEN,
    summary="A function call this check cannot prove harmless: functions can end sessions, read and write "
            "files, run SQL given as text, or change roles and settings.",
    hint="Write what the function does as plain SQL statements, or have the migration reviewed; "
         "harmless built-ins (lower, now, gen_random_uuid, ...) are listed in handlers/migrations/harmless.py.",
    check=check, on=(), bad=tuple(BAD), good=tuple(GOOD),
)
