"""validate-constraint-under-lock: VALIDATE CONSTRAINT in the migration that already locked the table.

dbops applies UP as one transaction (BEGIN/COMMIT in the file are dropped), so a lock an earlier
statement took is held to the end, and VALIDATE's full scan runs under it: writes wait for the whole
scan. The usual case is ADD CONSTRAINT ... NOT VALID and VALIDATE CONSTRAINT in the same file, where
NOT VALID buys nothing (for a foreign key, writes to the referenced table wait too). A statement that
runs alone (the CONCURRENTLY forms, VACUUM) ends the transaction, and the locks with it.
"""
from __future__ import annotations

from typing import Iterator

from ..nodes import Node, TableName, alter_table_cmds, column_constraints, is_alter_table, quote_ident, table_of
from ..rule import WARNING, Rule

BAD = [
    'ALTER TABLE "Notes" ADD CONSTRAINT "FK_Notes_Projects_ProjectId" FOREIGN KEY ("ProjectId") '
    'REFERENCES "Projects" ("Id") NOT VALID;\n'
    'ALTER TABLE "Notes" VALIDATE CONSTRAINT "FK_Notes_Projects_ProjectId";',
    # BEGIN/COMMIT in the file do not split it: dbops drops them and runs one transaction
    'BEGIN;\nALTER TABLE "Projects" ADD CONSTRAINT "CK_Projects_Budget" CHECK ("Budget" >= 0) NOT VALID;\nCOMMIT;\n'
    'BEGIN;\nALTER TABLE "Projects" VALIDATE CONSTRAINT "CK_Projects_Budget";\nCOMMIT;',
    # an unnamed foreign key gets <table>_<column>_fkey
    'ALTER TABLE "Notes" ADD FOREIGN KEY ("BoardId") REFERENCES "Boards" ("Id") NOT VALID;\n'
    'ALTER TABLE "Notes" VALIDATE CONSTRAINT "Notes_BoardId_fkey";',
    # any earlier lock that blocks writes, e.g. a new column: the scan runs under its ACCESS EXCLUSIVE
    'ALTER TABLE "Notes" ADD COLUMN "Color" text;\nALTER TABLE "Notes" VALIDATE CONSTRAINT "FK_Notes_Users_UserId";',
]
GOOD = [
    'ALTER TABLE "Notes" VALIDATE CONSTRAINT "FK_Notes_Projects_ProjectId";',
    'ALTER TABLE "Notes" ADD CONSTRAINT "FK_Notes_Projects_ProjectId" FOREIGN KEY ("ProjectId") '
    'REFERENCES "Projects" ("Id") NOT VALID;',
    # a statement that runs alone ends the transaction that held the ADD's lock
    'ALTER TABLE "Notes" ADD CONSTRAINT "CK_Notes_Title" CHECK (length("Title") > 0) NOT VALID;\n'
    'CREATE INDEX CONCURRENTLY "IX_Notes_Title" ON "Notes" ("Title");\n'
    'ALTER TABLE "Notes" VALIDATE CONSTRAINT "CK_Notes_Title";',
    'CREATE TABLE t (id bigint, n int);\nALTER TABLE t ADD CONSTRAINT t_n CHECK (n > 0) NOT VALID;\n'
    'ALTER TABLE t VALIDATE CONSTRAINT t_n;',
    # row locks (UPDATE) do not block other writers of the table
    'UPDATE "Notes" SET "Title" = \'untitled\' WHERE "Title" = \'\';\n'
    'ALTER TABLE "Notes" VALIDATE CONSTRAINT "CK_Title";',
]

SRE, AE = "SHARE ROW EXCLUSIVE", "ACCESS EXCLUSIVE"
# ALTER TABLE commands taking SHARE UPDATE EXCLUSIVE (or weaker) on the table: writes go on.
_WRITES_GO_ON = {"AT_ValidateConstraint", "AT_SetStatistics", "AT_SetOptions", "AT_ResetOptions", "AT_ClusterOn",
                 "AT_DropCluster", "AT_SetRelOptions", "AT_ResetRelOptions", "AT_AttachPartition"}
_TRIGGER_CMDS = {"AT_EnableTrig", "AT_EnableAlwaysTrig", "AT_EnableReplicaTrig", "AT_DisableTrig",
                 "AT_EnableTrigAll", "AT_DisableTrigAll", "AT_EnableTrigUser", "AT_DisableTrigUser"}
_LOCK_MODES = {5: "SHARE", 6: SRE, 7: "EXCLUSIVE", 8: AE}  # LOCK TABLE modes that block writes
# Statement kinds that may take a lock blocking writes, or run alone (the others are skipped).
_MAY_LOCK = frozenset({"AlterTableStmt", "IndexStmt", "CreateTrigStmt", "LockStmt", "TruncateStmt", "RenameStmt",
                       "ClusterStmt", "AlterObjectSchemaStmt", "CreateStmt", "DropStmt", "ReindexStmt", "VacuumStmt"})


def check(ctx):
    validated = {table_of(s.node["relation"]) for s in ctx.statements if s.kind == "AlterTableStmt" and any(
        cmd.get("subtype") == "AT_ValidateConstraint" for _, cmd in alter_table_cmds(s.node))}
    if not validated:
        return
    held: dict[TableName, tuple[int, str]] = {}  # table: (line, mode) of the first lock blocking writes
    not_valid: dict[tuple[TableName, str], tuple[int, TableName | None]] = {}  # (table, name): (line, referenced)
    for stmt in ctx.statements:
        if stmt.kind not in _MAY_LOCK:
            continue
        if _runs_alone(stmt):
            held.clear()
            not_valid.clear()
            continue
        for table, cmd, locks in _commands(stmt):
            validates = cmd is not None and cmd.get("subtype") == "AT_ValidateConstraint"
            if validates and not ctx.created_before(table, stmt):
                message = _message(table, cmd["name"], held, not_valid)
                if message:
                    yield stmt, message
            if cmd is not None and table in validated:
                _remember_not_valid(table, cmd, stmt.line, not_valid)
            for locked, mode in locks:
                if locked in validated:
                    held.setdefault(locked, (stmt.line, mode))


def _message(table: TableName, name: str, held, not_valid) -> str | None:
    label = f"{quote_ident(name)} on {table}"
    added = not_valid.get((table, name))
    if added:
        line, referenced = added
        locks = (f"SHARE ROW EXCLUSIVE locks on {table} and {referenced} are" if referenced
                 else f"ACCESS EXCLUSIVE lock on {table} is")
        return (f"validates {label}, added NOT VALID at line {line} of this same migration: dbops applies UP as one "
                f"transaction, so every row is scanned while the ADD's {locks} still held (writes wait): "
                "NOT VALID buys nothing here")
    if table in held:
        line, mode = held[table]
        return (f"validates {label} while the {mode} lock line {line} took on {table} is still held (dbops applies "
                "UP as one transaction): writes to it wait for the whole scan")
    return None


def _remember_not_valid(table: TableName, cmd: Node, line: int, not_valid) -> None:
    constraint = cmd.get("def", {}).get("Constraint", {})
    if cmd.get("subtype") != "AT_AddConstraint" or not constraint.get("skip_validation"):
        return
    referenced = table_of(constraint["pktable"]) if constraint.get("contype") == "CONSTR_FOREIGN" else None
    name = constraint.get("conname")
    if name is None and referenced is not None:  # PostgreSQL names it <table>_<first column>_fkey
        columns = [c["String"]["sval"] for c in constraint.get("fk_attrs", ()) if "String" in c]
        name = f"{table.name}_{columns[0]}_fkey" if columns else None
    if name:
        not_valid[(table, name)] = (line, referenced)


def _commands(stmt) -> Iterator[tuple[TableName | None, Node | None, list[tuple[TableName, str]]]]:
    """(table, ALTER TABLE command or None, locks blocking writes it takes), in the order they are taken."""
    node, kind = stmt.node, stmt.kind
    if kind == "AlterTableStmt" and is_alter_table(node):
        table = table_of(node["relation"])
        for _, cmd in alter_table_cmds(node):
            yield table, cmd, _alter_locks(table, cmd)
    elif kind == "IndexStmt" and not node.get("concurrent"):
        yield None, None, [(table_of(node["relation"]), "SHARE")]
    elif kind == "CreateTrigStmt":
        yield None, None, [(table_of(node["relation"]), SRE)]
    elif kind == "LockStmt" and node.get("mode", 8) in _LOCK_MODES:
        mode = _LOCK_MODES[node.get("mode", 8)]
        yield None, None, [(table_of(r["RangeVar"]), mode) for r in node.get("relations", ())]
    elif kind == "TruncateStmt":
        yield None, None, [(table_of(r["RangeVar"]), AE) for r in node.get("relations", ())]
    elif kind in ("RenameStmt", "ClusterStmt", "AlterObjectSchemaStmt") and "relation" in node:
        yield None, None, [(table_of(node["relation"]), AE)]
    elif kind == "CreateStmt":  # its foreign keys lock the tables they reference
        yield None, None, [(table_of(c["pktable"]), SRE) for c in _constraints(node.get("tableElts", ()))
                           if c.get("contype") == "CONSTR_FOREIGN"]


def _alter_locks(table: TableName, cmd: Node) -> list[tuple[TableName, str]]:
    subtype = cmd.get("subtype")
    if subtype in _WRITES_GO_ON or (subtype == "AT_DetachPartition" and cmd["def"]["PartitionCmd"].get("concurrent")):
        return []
    definition = cmd.get("def", {})
    constraints = _constraints([definition])
    if "ColumnDef" in definition:
        constraints += column_constraints(definition["ColumnDef"])
    referenced = [table_of(c["pktable"]) for c in constraints if c.get("contype") == "CONSTR_FOREIGN"]
    if referenced and subtype == "AT_AddConstraint":
        return [(table, SRE)] + [(r, SRE) for r in referenced]
    return [(table, SRE if subtype in _TRIGGER_CMDS else AE)] + [(r, SRE) for r in referenced]


def _constraints(elements) -> list[Node]:
    found = []
    for element in elements:
        if "Constraint" in element:
            found.append(element["Constraint"])
        elif "ColumnDef" in element:
            found += column_constraints(element["ColumnDef"])
    return found


def _runs_alone(stmt) -> bool:
    """Does dbops run this statement alone, outside the migration's transaction (see apply.py)?"""
    node, kind = stmt.node, stmt.kind
    if kind in ("IndexStmt", "DropStmt"):
        return bool(node.get("concurrent"))
    if kind == "ReindexStmt":
        return node.get("kind") in ("REINDEX_OBJECT_SYSTEM", "REINDEX_OBJECT_DATABASE") or any(
            p.get("DefElem", {}).get("defname") == "concurrently" for p in node.get("params", ()))
    if kind == "VacuumStmt":
        return bool(node.get("is_vacuumcmd"))
    return kind == "AlterTableStmt" and any(
        cmd.get("subtype") == "AT_DetachPartition" and cmd["def"]["PartitionCmd"].get("concurrent")
        for _, cmd in alter_table_cmds(node))


RULE = Rule(
    code="validate-constraint-under-lock",
    severity=WARNING,
    summary="VALIDATE CONSTRAINT scans the table while a lock an earlier statement of the migration took still "
            "blocks writes: dbops applies UP as one transaction.",
    hint="Validate in a later migration, once the one adding the constraint NOT VALID is applied: on its own, "
         "VALIDATE CONSTRAINT takes only a SHARE UPDATE EXCLUSIVE lock and writes go on during the scan.",
    check=check, on=(), bad=tuple(BAD), good=tuple(GOOD),
)
