"""drop-materialized-view: a materialized view holds rows; they can be rebuilt, but readers break meanwhile.

A warning, not forbidden: its rows are computed from other tables, so CREATE MATERIALIZED VIEW
and REFRESH bring them back without loss (unless the source rows changed since; then it shows
today's data, which is what a refresh does anyway). What it costs is the rebuild time, during
which clients reading the view fail.
"""
from ..nodes import table_of_names
from ..rule import WARNING, Rule

BAD = [
    'DROP MATERIALIZED VIEW "NoteStats";',
    'DROP MATERIALIZED VIEW IF EXISTS reports.daily, reports.weekly;',
]
GOOD = [
    'DROP VIEW "ActiveUsers";',
    'REFRESH MATERIALIZED VIEW CONCURRENTLY "NoteStats";',
]


def check(stmt, ctx):
    if stmt.node.get("removeType") != "OBJECT_MATVIEW":
        return
    for names in stmt.node.get("objects", ()):
        view = table_of_names(names["List"]["items"])
        if not ctx.created_before(view, stmt):
            yield (f"drops materialized view {view} and its stored rows: they come back only by recreating and "
                   "refreshing it, and clients reading it fail until then")


RULE = Rule(
    code="drop-materialized-view",
    severity=WARNING,
    summary="Dropping a materialized view deletes rows computed from other tables: rebuilding them takes time "
            "and readers fail meanwhile.",
    hint="Create the new view under another name and refresh it first, switch readers over, then drop the old one.",
    check=check, on=("DropStmt",), bad=tuple(BAD), good=tuple(GOOD),
)
