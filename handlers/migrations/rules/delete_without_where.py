"""delete-without-where: DELETE without a WHERE clause empties the table."""
from ..nodes import matches_every_row, table_of, with_queries
from ..rule import FORBIDDEN, Rule

BAD = [
    'DELETE FROM "Notes";',
    'DELETE FROM "Notes" WHERE true;',
    'WITH gone AS (DELETE FROM "Notes" RETURNING "Id") SELECT count(*) FROM gone;',
]
GOOD = [
    'DELETE FROM "Notes" WHERE "UserId" = 42;',
    'DELETE FROM "RefreshTokens" WHERE "ExpiresAt" < now();',
]


def check(stmt, ctx):
    found = [(stmt.kind, stmt.node)] + list(with_queries(stmt.node))
    for kind, node in found:
        if kind == "DeleteStmt" and matches_every_row(node.get("whereClause")):
            yield f"deletes every row of {table_of(node['relation'])} (no WHERE clause)"


RULE = Rule(
    code="delete-without-where",
    severity=FORBIDDEN,
    summary="A DELETE without WHERE removes every row of the table.",
    hint="Add a WHERE clause naming the rows to remove, and delete in batches "
         "(e.g. WHERE id IN (SELECT id ... LIMIT 10000)) to keep locks and WAL small.",
    check=check, on=("DeleteStmt", "SelectStmt", "InsertStmt", "UpdateStmt"), bad=tuple(BAD), good=tuple(GOOD),
)
