"""primary-key-nullable: a primary key on a column that may hold NULLs sets it NOT NULL, scanning every row.

ADD PRIMARY KEY, with its own index or USING INDEX, makes each key column NOT NULL; a column that is
not NOT NULL yet (nor proven so by a valid CHECK, which PostgreSQL 12+ uses) is checked by a full
scan under the ACCESS EXCLUSIVE lock, even when the index was built CONCURRENTLY beforehand.
"""
from ..nodes import column_label, quote_ident
from ..rule import WARNING, Rule

BAD = [
    'CREATE UNIQUE INDEX CONCURRENTLY "IX_Tags_Name" ON "Tags" ("Name");\n'
    'ALTER TABLE "Tags" ADD CONSTRAINT "PK_Tags" PRIMARY KEY USING INDEX "IX_Tags_Name";',
    'ALTER TABLE "ExternalLogins" ADD PRIMARY KEY ("Provider", "Key");',
    'ALTER TABLE "Tags" ADD COLUMN "Code" text;\n'
    'CREATE UNIQUE INDEX CONCURRENTLY "IX_Tags_Code" ON "Tags" ("Code");\n'
    'ALTER TABLE "Tags" ADD CONSTRAINT "PK_Tags" PRIMARY KEY USING INDEX "IX_Tags_Code";',
]
GOOD = [
    'ALTER TABLE "Tags" ALTER COLUMN "Name" SET NOT NULL;\n'
    'CREATE UNIQUE INDEX CONCURRENTLY "IX_Tags_Name" ON "Tags" ("Name");\n'
    'ALTER TABLE "Tags" ADD CONSTRAINT "PK_Tags" PRIMARY KEY USING INDEX "IX_Tags_Name";',
    'ALTER TABLE "Tags" ADD CONSTRAINT "CK_Tags_Name" CHECK ("Name" IS NOT NULL);\n'
    'ALTER TABLE "Tags" ADD PRIMARY KEY ("Name");',
    'CREATE TABLE t (id bigint);\nALTER TABLE t ADD PRIMARY KEY (id);',
    'ALTER TABLE "Tags" ADD CONSTRAINT "UQ_Tags_Name" UNIQUE USING INDEX "IX_Tags_Name";',
]


def check(stmt, ctx):
    for pos, _ in enumerate(stmt.node.get("cmds", ())):
        site = ctx.timeline.primary_keys.get((stmt.index, pos))
        if site is None or ctx.created_before(site.table, stmt):
            continue
        what = f"adds a PRIMARY KEY on {site.table}" + (f" using {quote_ident(site.index)}" if site.index else "")
        if site.columns is None:
            where = "the target database" if ctx.has_database else "this file (no database given)"
            yield (f"{what}, whose columns are not known from {where}: each one not yet NOT NULL is set NOT NULL, "
                   "scanning every row under an ACCESS EXCLUSIVE lock")
            continue
        nullable = [c for c in site.columns if c.state == "nullable"]
        unknown = [c for c in site.columns if c.state == "unknown"]
        if not nullable and not unknown:
            continue
        parts = []
        if nullable:
            parts.append(f"{_labels(nullable)} {'is' if len(nullable) == 1 else 'are'} nullable")
        if unknown:
            why = "not in the target database" if ctx.has_database else "no database given"
            parts.append(f"{_labels(unknown)} {'is' if len(unknown) == 1 else 'are'} not known to be NOT NULL ({why})")
        yield (f"{what}: {' and '.join(parts)}; PostgreSQL sets a key column that is not NOT NULL yet NOT NULL "
               "by scanning every row under an ACCESS EXCLUSIVE lock (reads and writes wait)")


def _labels(sites) -> str:
    return ", ".join(column_label(s.table, s.column) for s in sites)


RULE = Rule(
    code="primary-key-nullable",
    severity=WARNING,
    summary="A primary key on columns not yet NOT NULL makes PostgreSQL set them NOT NULL, scanning the table "
            "under an ACCESS EXCLUSIVE lock.",
    hint="Make the key columns NOT NULL first without a long lock (ADD CHECK (col IS NOT NULL) NOT VALID, "
         "VALIDATE it in a later migration, SET NOT NULL), then CREATE UNIQUE INDEX CONCURRENTLY and "
         "ADD CONSTRAINT ... PRIMARY KEY USING INDEX.",
    check=check, on=("AlterTableStmt",), bad=tuple(BAD), good=tuple(GOOD),
    cmds=("AT_AddConstraint",),
)
