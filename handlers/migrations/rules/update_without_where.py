"""update-without-where: UPDATE without a WHERE clause (or with one that is always true) rewrites every row."""
from ..nodes import MAY_CHANGE_ROWS, table_of
from ..predicates import matches_every_row
from ..rule import FORBIDDEN, Rule

BAD = [
    'UPDATE "Users" SET "EmailConfirmed" = true;',
    'UPDATE "Users" SET "DisplayName" = NULL WHERE true;',
    'UPDATE "Users" SET "DisplayName" = NULL WHERE "Id" = "Id";',
    'UPDATE "Users" SET "DisplayName" = NULL WHERE "Email" IS NULL OR "Email" IS NOT NULL;',
    'WITH u AS (UPDATE "Notes" SET "IsPinned" = false RETURNING 1) SELECT count(*) FROM u;',
    'PREPARE p AS UPDATE "Notes" SET "Title" = \'\';',
    # an upsert fed by a whole table updates every row that conflicts
    'INSERT INTO "Notes" SELECT * FROM "Notes" ON CONFLICT ("Id") DO UPDATE SET "Title" = NULL;',
]
GOOD = [
    'UPDATE "Users" SET "EmailConfirmed" = true WHERE "Id" = 7;',
    'UPDATE "Notes" SET "IsPinned" = false WHERE "Id" BETWEEN 1 AND 10000;',
    'INSERT INTO "Tags" ("Name") VALUES (\'x\') ON CONFLICT ("Name") DO UPDATE SET "Uses" = "Tags"."Uses" + 1;',
]


def check(stmt, ctx):
    nested = ctx.nested(stmt)
    for node in nested.get("UpdateStmt", ()):
        where = node.get("whereClause")
        if matches_every_row(where):
            why = "no WHERE clause" if where is None else "its WHERE clause is always true"
            yield f"updates every row of {table_of(node['relation'])} ({why})"
    for node in nested.get("InsertStmt", ()):
        conflict = node.get("onConflictClause") or {}
        source = (node.get("selectStmt") or {}).get("SelectStmt") or {}
        if (conflict.get("action") == "ONCONFLICT_UPDATE" and matches_every_row(conflict.get("whereClause"))
                and source.get("fromClause") and matches_every_row(source.get("whereClause"))):
            yield (f"upserts every row of a query into {table_of(node['relation'])} with ON CONFLICT DO UPDATE "
                   "and no WHERE: every existing row that conflicts is updated")


RULE = Rule(
    code="update-without-where",
    severity=FORBIDDEN,
    summary="An UPDATE without WHERE, or with a WHERE that is always true, overwrites a column in every row, "
            "and the old values are gone.",
    hint="Add a WHERE clause, and backfill large tables in batches of a few thousand rows per "
         "transaction; keep the old values (a new column or a copy) until the change is verified.",
    check=check, on=MAY_CHANGE_ROWS, bad=tuple(BAD), good=tuple(GOOD),
)
