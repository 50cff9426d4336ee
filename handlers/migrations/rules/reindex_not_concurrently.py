"""reindex-not-concurrently: REINDEX without CONCURRENTLY blocks writes, and reads that would use the index."""
from ..nodes import table_of
from ..rule import WARNING, Rule

BAD = [
    'REINDEX INDEX "IX_Notes_Title";',
    'REINDEX TABLE "Notes";',
    "REINDEX SCHEMA public;",
]
GOOD = [
    'REINDEX INDEX CONCURRENTLY "IX_Notes_Title";',
    'REINDEX (CONCURRENTLY) TABLE "Notes";',
    "CREATE TABLE t (id bigint PRIMARY KEY);\nREINDEX TABLE t;",
    "REINDEX SYSTEM asidenote;  -- system catalogs have no concurrent form",
]

_WHAT = {"REINDEX_OBJECT_INDEX": "index", "REINDEX_OBJECT_TABLE": "table", "REINDEX_OBJECT_SCHEMA": "schema",
         "REINDEX_OBJECT_DATABASE": "database"}


def check(stmt, ctx):
    node = stmt.node
    what = _WHAT.get(node.get("kind"))
    if what is None or any(p.get("DefElem", {}).get("defname") == "concurrently" for p in node.get("params", ())):
        return
    if "relation" in node:
        target = table_of(node["relation"])
        if what == "table" and ctx.created_before(target, stmt):
            return
    else:
        target = node.get("name") or "the current database"
    yield (f"rebuilds {what} {target} without CONCURRENTLY: writes to the table wait, and so do reads that "
           "would use the index, until the rebuild ends")


RULE = Rule(
    code="reindex-not-concurrently",
    severity=WARNING,
    summary="REINDEX without CONCURRENTLY blocks writes to the table (and reads using the index) while it runs.",
    hint="Use REINDEX ... CONCURRENTLY (PostgreSQL 12+; dbops runs it alone, outside the transaction); if it "
         "fails, drop the leftover invalid index (<name>_ccnew) and retry.",
    check=check, on=("ReindexStmt",), bad=tuple(BAD), good=tuple(GOOD),
)
