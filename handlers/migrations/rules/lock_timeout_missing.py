"""lock-timeout-missing: a statement waiting for a strong lock queues every query behind it."""
from ..nodes import alter_table_cmds, is_alter_table, table_of, table_of_names
from ..rule import WARNING, Rule

BAD = [
    'ALTER TABLE "Notes" ADD COLUMN "Color" text;',
    'CREATE INDEX "IX_Notes_Title" ON "Notes" ("Title");',
    "SET lock_timeout = '2s';\nRESET lock_timeout;\nALTER TABLE \"Notes\" ADD COLUMN \"Color\" text;",
]
GOOD = [
    "SET lock_timeout = '2s';\nALTER TABLE \"Notes\" ADD COLUMN \"Color\" text;",
    "SELECT set_config('lock_timeout', '5s', false);\nTRUNCATE \"AuditLogs\";",
    'CREATE INDEX CONCURRENTLY "IX_Notes_Title" ON "Notes" ("Title");',
    'ALTER TABLE "Notes" VALIDATE CONSTRAINT "FK_Notes_Users_UserId";',
    'CREATE TABLE t (id bigint);\nALTER TABLE t ADD COLUMN n int;',
]

_ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
_LOCK_MODES = {5: "SHARE", 6: "SHARE ROW EXCLUSIVE", 7: "EXCLUSIVE", 8: _ACCESS_EXCLUSIVE}


def strong_lock(stmt, ctx) -> str | None:
    """'<mode> lock on <table>' when the statement takes a SHARE or stronger lock on a table
    that existed before this file; None otherwise."""
    node, kind = stmt.node, stmt.kind
    table, mode = None, _ACCESS_EXCLUSIVE
    if kind == "AlterTableStmt" and is_alter_table(node):
        subtypes = {cmd.get("subtype") for _, cmd in alter_table_cmds(node)}
        if subtypes <= {"AT_ValidateConstraint"}:
            return None  # SHARE UPDATE EXCLUSIVE: does not block reads or writes
        table = table_of(node["relation"])
    elif kind == "IndexStmt" and not node.get("concurrent"):
        table, mode = table_of(node["relation"]), "SHARE"
    elif kind == "RenameStmt" and "relation" in node:
        table = table_of(node["relation"])
    elif kind == "DropStmt" and node.get("removeType") in (
            "OBJECT_TABLE", "OBJECT_INDEX", "OBJECT_VIEW", "OBJECT_MATVIEW"):
        if node.get("concurrent"):
            return None
        tables = [table_of_names(o["List"]["items"]) for o in node.get("objects", ()) if "List" in o]
        tables = [t for t in tables if not ctx.created_before(t, stmt)]
        return f"{mode} lock on {tables[0]}" if tables else None
    elif kind in ("TruncateStmt", "LockStmt"):
        rels = [table_of(r["RangeVar"]) for r in node.get("relations", ())]
        if kind == "LockStmt":
            mode = _LOCK_MODES.get(node.get("mode", 8))
            if mode is None:
                return None
        rels = [t for t in rels if not ctx.created_before(t, stmt)]
        return f"{mode} lock on {rels[0]}" if rels else None
    elif kind == "VacuumStmt" and any(o.get("DefElem", {}).get("defname") == "full" for o in node.get("options", ())):
        return f"{mode} lock (VACUUM FULL)"
    elif kind == "ClusterStmt" and "relation" in node:
        table = table_of(node["relation"])
    elif kind == "CreateTrigStmt":
        table, mode = table_of(node["relation"]), "SHARE ROW EXCLUSIVE"
    else:
        return None
    if table is None or ctx.created_before(table, stmt):
        return None
    return f"{mode} lock on {table}"


def check(stmt, ctx):
    if ctx.lock_timeout_set(stmt):
        return
    lock = strong_lock(stmt, ctx)
    if lock:
        article = "an" if lock[0] in "AEIOU" else "a"
        yield (f"takes {article} {lock} with no lock_timeout set in this file: while it waits for the lock, "
               "every other query on the table queues behind it")


RULE = Rule(
    code="lock-timeout-missing",
    severity=WARNING,
    summary="Without lock_timeout, a migration waiting behind a long query blocks all traffic on the table.",
    hint="Start the migration with SET lock_timeout = '2s' (and a statement_timeout), and retry the "
         "migration if it times out.",
    check=check, on=("AlterTableStmt", "IndexStmt", "RenameStmt", "DropStmt", "TruncateStmt", "LockStmt",
                     "VacuumStmt", "ClusterStmt", "CreateTrigStmt"),
    bad=tuple(BAD), good=tuple(GOOD), once_per_file=True,
)
