"""table-rewrite: statements that rewrite a whole existing table under an ACCESS EXCLUSIVE lock."""
from ..nodes import Node, alter_table_cmds, column_constraints, column_label, is_alter_table, strings, table_of
from ..rule import WARNING, Rule
from ..sqltypes import SERIALS
from .type_table import Change

BAD = [
    # the old type comes from the ADD COLUMN earlier in the same file
    'ALTER TABLE "Notes" ADD COLUMN "Views" integer;\nALTER TABLE "Notes" ALTER COLUMN "Views" TYPE bigint;',
    # lossy in general, but the column this file added holds only NULLs: just the rewrite
    'ALTER TABLE "Notes" ADD COLUMN "Score" numeric(12,2);\n'
    'ALTER TABLE "Notes" ALTER COLUMN "Score" TYPE numeric(12,1);',
    'ALTER TABLE "Notes" ADD COLUMN "Uid" uuid DEFAULT gen_random_uuid();',
    'ALTER TABLE "Notes" ADD COLUMN "Seq" bigserial;',
    'ALTER TABLE "Notes" ADD COLUMN "Words" integer GENERATED ALWAYS AS (length("Content")) STORED;',
    'ALTER TABLE "Notes" SET TABLESPACE fast_ssd;',
    'ALTER TABLE "Notes" SET LOGGED;',
    'VACUUM FULL "Notes";',
    'CLUSTER "Notes" USING "IX_Notes_UserId";',
]
GOOD = [
    'ALTER TABLE "Notes" ADD COLUMN "Archived" boolean NOT NULL DEFAULT false;',
    'ALTER TABLE "Notes" ADD COLUMN "SeenAt" timestamptz DEFAULT now();',
    'VACUUM (ANALYZE) "Notes";',
    'CREATE TABLE t (id bigint);\nALTER TABLE t ADD COLUMN u uuid DEFAULT gen_random_uuid();',
]

# Functions known not to be volatile: a default calling only these is stored once in the
# catalog (PostgreSQL 11+ "fast default") instead of being written into every row.
NON_VOLATILE = frozenset({
    "now", "transaction_timestamp", "statement_timestamp", "current_setting", "lower", "upper",
    "length", "concat", "concat_ws", "btrim", "trim", "to_jsonb", "to_json", "jsonb_build_object",
    "json_build_object", "jsonb_build_array", "array_fill", "make_interval", "make_date",
    "to_timestamp", "to_date", "date_trunc", "replace", "substr", "left", "right", "md5",
})
_REWRITING_SUBTYPES = {
    "AT_SetTableSpace": "SET TABLESPACE moves every row",
    "AT_SetLogged": "SET LOGGED rewrites the table into the WAL",
    "AT_SetUnLogged": "SET UNLOGGED rewrites the table",
    "AT_SetAccessMethod": "SET ACCESS METHOD rewrites the table",
}


def check(stmt, ctx):
    if stmt.kind == "AlterTableStmt":
        if not is_alter_table(stmt.node):
            return
        table = table_of(stmt.node["relation"])
        if ctx.created_before(table, stmt):
            return  # a table made in this file is still empty: rewriting it costs nothing
        for change in ctx.type_changes_of(stmt):
            if change.change is Change.REWRITE:
                yield f"{change.describe()}; it rewrites {table} and its indexes under an ACCESS EXCLUSIVE lock"
        for _, cmd in alter_table_cmds(stmt.node):
            subtype = cmd.get("subtype")
            if subtype == "AT_AddColumn":
                why = _add_column_rewrite(cmd["def"]["ColumnDef"])
                if why:
                    label = column_label(table, cmd["def"]["ColumnDef"]["colname"])
                    yield f"adds {label} {why}: every row of {table} is rewritten under an ACCESS EXCLUSIVE lock"
            elif subtype in _REWRITING_SUBTYPES:
                yield f"{_REWRITING_SUBTYPES[subtype]} of {table} under an ACCESS EXCLUSIVE lock"
    elif stmt.kind == "VacuumStmt":
        options = {o.get("DefElem", {}).get("defname") for o in stmt.node.get("options", ())}
        if "full" in options:
            for rel in stmt.node.get("rels", ()) or [None]:
                target = table_of(rel["VacuumRelation"]["relation"]) if rel else "every table"
                yield f"VACUUM FULL rewrites {target} under an ACCESS EXCLUSIVE lock"
    elif stmt.kind == "ClusterStmt" and "relation" in stmt.node:
        yield f"CLUSTER rewrites {table_of(stmt.node['relation'])} under an ACCESS EXCLUSIVE lock"


def _add_column_rewrite(coldef: Node) -> str | None:
    names = strings(coldef["typeName"].get("names"))
    if names and names[-1] in SERIALS:
        return "as a serial (its nextval() default is volatile)"
    for constraint in column_constraints(coldef):
        contype = constraint.get("contype")
        if contype == "CONSTR_IDENTITY":
            return "as an identity column (each row gets its own value)"
        if contype == "CONSTR_GENERATED" and constraint.get("generated_kind", "s") == "s":
            return "as a stored generated column"
        if contype == "CONSTR_DEFAULT":
            calls = [name for name in _function_names(constraint.get("raw_expr")) if name not in NON_VOLATILE]
            if calls:
                return f"with a default calling {', '.join(sorted(set(calls)))}(), volatile or not known to be stable"
    return None


def _function_names(node) -> list[str]:
    """Names of every function called anywhere in an expression tree."""
    found: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            call = item.get("FuncCall")
            if call is not None:
                found.append(strings(call.get("funcname"))[-1])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


RULE = Rule(
    code="table-rewrite",
    severity=WARNING,
    summary="The statement rewrites the whole table while holding an ACCESS EXCLUSIVE lock: reads and writes wait.",
    hint="Expand/contract instead: add a new nullable column without a volatile default, backfill it "
         "in batches, then switch over; for type changes, add a column of the new type and backfill it. "
         "If a rewrite is acceptable, run it in a maintenance window with lock_timeout set.",
    check=check, on=("AlterTableStmt", "VacuumStmt", "ClusterStmt"), bad=tuple(BAD), good=tuple(GOOD),
    cmds=("AT_AlterColumnType", "AT_AddColumn", *_REWRITING_SUBTYPES),
)
