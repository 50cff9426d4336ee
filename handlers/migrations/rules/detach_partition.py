"""detach-partition: DETACH PARTITION without CONCURRENTLY locks the parent table for reads and writes."""
from ..nodes import alter_table_cmds, is_alter_table, table_of
from ..rule import WARNING, Rule

BAD = [
    'ALTER TABLE "AuditLogs" DETACH PARTITION "AuditLogs_2023";',
]
GOOD = [
    'ALTER TABLE "AuditLogs" DETACH PARTITION "AuditLogs_2023" CONCURRENTLY;',
    'ALTER TABLE "AuditLogs" DETACH PARTITION "AuditLogs_2023" FINALIZE;',
    "CREATE TABLE logs (at timestamptz) PARTITION BY RANGE (at);\n"
    "CREATE TABLE logs_2023 PARTITION OF logs FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');\n"
    "ALTER TABLE logs DETACH PARTITION logs_2023;",
]


def check(stmt, ctx):
    if not is_alter_table(stmt.node):
        return
    parent = table_of(stmt.node["relation"])
    if ctx.created_before(parent, stmt):
        return
    for _, cmd in alter_table_cmds(stmt.node):
        if cmd.get("subtype") == "AT_DetachPartition" and not cmd["def"]["PartitionCmd"].get("concurrent"):
            partition = table_of(cmd["def"]["PartitionCmd"]["name"])
            yield (f"detaches {partition} from {parent} without CONCURRENTLY: an ACCESS EXCLUSIVE lock on {parent} "
                   f"blocks its reads and writes; afterwards queries on {parent} no longer see {partition}'s rows")


RULE = Rule(
    code="detach-partition",
    severity=WARNING,
    summary="DETACH PARTITION without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on the partitioned table.",
    hint="On PostgreSQL 14+ use DETACH PARTITION ... CONCURRENTLY (SHARE UPDATE EXCLUSIVE on the parent; dbops "
         "runs it alone, outside the transaction; if it is interrupted, finish with DETACH PARTITION ... FINALIZE). "
         "Before 14 there is no concurrent form: set lock_timeout and run it when traffic is low.",
    check=check, on=("AlterTableStmt",), bad=tuple(BAD), good=tuple(GOOD),
    cmds=("AT_DetachPartition",),
)
