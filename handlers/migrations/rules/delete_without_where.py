"""delete-without-where: DELETE without a WHERE clause (or with one that is always true) empties the table."""
from ..nodes import MAY_CHANGE_ROWS, table_of
from ..predicates import matches_every_row
from ..rule import FORBIDDEN, Rule

BAD = [
    'DELETE FROM "Notes";',
    'DELETE FROM "Notes" WHERE true;',
    'DELETE FROM "Notes" WHERE 1 = 1;',
    'DELETE FROM public."Notes" WHERE \'a\' = \'a\';',
    'DELETE FROM "Notes" WHERE "IsPinned" IS NOT NULL OR TRUE;',
    'DELETE FROM "Notes" WHERE NOT false;',
    'WITH gone AS (DELETE FROM "Notes" RETURNING "Id") SELECT count(*) FROM gone;',
    'EXPLAIN ANALYZE DELETE FROM "Notes";',
    'CREATE RULE wipe AS ON INSERT TO "Boards" DO INSTEAD DELETE FROM "Notes";',
]
GOOD = [
    'DELETE FROM "Notes" WHERE "UserId" = 42;',
    'DELETE FROM "RefreshTokens" WHERE "ExpiresAt" < now();',
    'DELETE FROM "Notes" WHERE 1 = 0 OR "Id" = 7;',
]


def check(stmt, ctx):
    for node in ctx.nested(stmt).get("DeleteStmt", ()):
        where = node.get("whereClause")
        if matches_every_row(where):
            why = "no WHERE clause" if where is None else "its WHERE clause is always true"
            yield f"deletes every row of {table_of(node['relation'])} ({why})"


RULE = Rule(
    code="delete-without-where",
    severity=FORBIDDEN,
    summary="A DELETE without WHERE, or with a WHERE that is always true, removes every row of the table.",
    hint="Add a WHERE clause naming the rows to remove, and delete in batches "
         "(e.g. WHERE id IN (SELECT id ... LIMIT 10000)) to keep locks and WAL small.",
    check=check, on=MAY_CHANGE_ROWS, bad=tuple(BAD), good=tuple(GOOD),
)
