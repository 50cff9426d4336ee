"""volatile-predicate: DELETE or UPDATE rows chosen by the clock, a sequence, chance or row position.

The rehearsal runs the migration on a copy restored from the latest backup and counts the
rows it touches. Rows written after that backup are not in the copy, so a predicate that can
select them (`"CreatedAt" > now() - interval '10 minutes'`, `>= current_date`, `"Id" >
currval(...)`) touches rows the rehearsal never saw; `random()`, TABLESAMPLE and physical row
positions (ctid) pick different rows every time. A purge of old rows (`"Timestamp" < now() -
interval '1 year'`) is fine: the copy holds every such row, and the rehearsal judges it as today.
"""
import re

from ..nodes import MAY_CHANGE_ROWS, Node, find_nodes, function_name, strings, table_of
from ..rule import FORBIDDEN, Rule

BAD = [
    'DELETE FROM "Notes" WHERE "CreatedAt" > now() - interval \'10 minutes\';',
    'UPDATE "Notes" SET "IsPinned" = false WHERE "CreatedAt" >= current_date;',
    'DELETE FROM "Notes" WHERE now() - interval \'1 day\' < "CreatedAt";',
    'DELETE FROM "Notes" WHERE "CreatedAt" BETWEEN now() - interval \'1 year\' AND now() - interval \'11 months\';',
    'DELETE FROM "Notes" WHERE random() < 0.5;',
    'DELETE FROM "Notes" WHERE NOT ("CreatedAt" < now() - interval \'1 year\');',
    'DELETE FROM "Notes" WHERE "Id" IN (SELECT "Id" FROM "Notes"'
    ' WHERE "CreatedAt" > clock_timestamp() - interval \'1 hour\');',
    'DELETE FROM "Notes" WHERE "Id" NOT IN (SELECT "Id" FROM "Notes" WHERE "CreatedAt" < now() - interval \'1 day\');',
    'DELETE FROM "Notes" WHERE "CreatedAt" > \'now\'::timestamptz - interval \'5 minutes\';',
    'DELETE FROM "Notes" WHERE "Id" > currval(\'"Notes_Id_seq"\') - 100;',
    'DELETE FROM "Notes" WHERE ctid > \'(1000,0)\';',
    'WITH recent AS (SELECT "Id" FROM "Notes" WHERE "CreatedAt" > localtimestamp - interval \'1 hour\') '
    'DELETE FROM "Notes" WHERE "Id" IN (SELECT "Id" FROM recent);',
    'DELETE FROM "Notes" WHERE "Id" IN (SELECT "Id" FROM "Notes" TABLESAMPLE BERNOULLI (10));',
]
GOOD = [
    'DELETE FROM "AuditLogs" WHERE "Timestamp" < now() - interval \'1 year\';',
    'DELETE FROM "RefreshTokens" WHERE "ExpiresAt" <= current_timestamp;',
    'DELETE FROM "AuditLogs" WHERE now() - interval \'1 year\' > "Timestamp" AND "Kind" = \'debug\';',
    'DELETE FROM "AuditLogs" WHERE "Id" IN (SELECT "Id" FROM "AuditLogs"'
    ' WHERE "Timestamp" < now() - interval \'90 days\' LIMIT 10000);',
    'UPDATE "Notes" SET "UpdatedAt" = now() WHERE "Id" = 7;',
]

# Values that move forward between the backup and the real run.
_MOVING_FUNCTIONS = frozenset({
    "now", "clock_timestamp", "statement_timestamp", "transaction_timestamp", "timeofday", "age",
    "nextval", "currval", "lastval", "txid_current", "pg_current_xact_id", "txid_current_snapshot",
    "pg_current_snapshot", "txid_snapshot_xmax", "pg_snapshot_xmax", "uuidv7",
})
_MOVING_WORDS = frozenset({"now", "today", "tomorrow", "yesterday"})  # 'now'::timestamptz is the clock
_RANDOM_FUNCTIONS = frozenset({
    "random", "random_normal", "gen_random_uuid", "uuid_generate_v4", "uuid_generate_v1", "uuid_generate_v1mc",
    "uuidv4", "gen_random_bytes", "setseed",
})
_SYSTEM_COLUMNS = frozenset({"ctid", "xmin", "xmax", "cmin", "cmax"})
_VALUE_KINDS = frozenset({"FuncCall", "SQLValueFunction", "RangeTableSample"})
# The other things _anywhere() looks for are string values in the parse tree's JSON: 'now'
# constants and system column names, possibly padded with (JSON-escaped) whitespace.
_PAD = r'(?:\s|\\[tnrfb]|\\u000[bB])*'
_WORDS_IN_JSON = re.compile('"sval":"' + _PAD + "(?:" + "|".join(sorted(_MOVING_WORDS | _SYSTEM_COLUMNS)) + ")"
                            + _PAD + '"', re.IGNORECASE)
_BELOW = {"<", "<="}
_ABOVE = {">", ">="}


def check(stmt, ctx):
    nested = ctx.nested(stmt)
    if not (nested.get("DeleteStmt") or nested.get("UpdateStmt")) or not (
            stmt.may_hold(_VALUE_KINDS) or _WORDS_IN_JSON.search(stmt.tree_json, *stmt.tree_span)):
        return  # nothing in it can differ between the copy and the real run
    changes = ([("deletes", n) for n in nested.get("DeleteStmt", ())]
               + [("updates", n) for n in nested.get("UpdateStmt", ())])
    if not changes:
        return
    # Queries in WITH clauses can feed the predicates (WHERE id IN (SELECT id FROM cte)).
    ctes = [q["SelectStmt"] for cte in nested.get("CommonTableExpr", ())
            if "SelectStmt" in (q := cte.get("ctequery", {}))]
    cte_reason = next((r for q in ctes if (r := _anywhere(q))), None)
    for verb, node in changes:
        reason = _where(node.get("whereClause"), True) or cte_reason
        for clause in ("usingClause", "fromClause"):
            reason = reason or _anywhere(node.get(clause))
        if reason:
            yield (f"{verb} rows of {table_of(node['relation'])} chosen by {reason}: rows written after the backup "
                   "the rehearsal ran on are not in its copy, so it cannot judge which rows this touches")


def _where(expr: Node | None, positive: bool) -> str | None:
    """Why the predicate cannot be judged on an older copy, or None. `positive`: the expression
    selects rows as it stands (not under NOT), so an upper bound on a column selects old rows."""
    if not expr:
        return None
    if "BoolExpr" in expr:
        b = expr["BoolExpr"]
        inner = positive and b.get("boolop") != "NOT_EXPR"
        return next((r for a in b.get("args", ()) if (r := _where(a, inner))), None)
    if "A_Expr" in expr and expr["A_Expr"].get("kind") == "AEXPR_OP":
        return _comparison(expr["A_Expr"], positive)
    if "SubLink" in expr:
        link = expr["SubLink"]
        select = link.get("subselect", {}).get("SelectStmt")
        if select is not None and not select.get("larg"):
            inner = positive and (link.get("subLinkType") == "EXISTS_SUBLINK" or (
                link.get("subLinkType") == "ANY_SUBLINK" and strings(link.get("operName")) in ([], ["="])))
            rest = {k: v for k, v in select.items() if k != "whereClause"}
            return (_anywhere(link.get("testexpr")) or _where(select.get("whereClause"), inner)
                    or _anywhere(rest))
    return _anywhere(expr)


def _comparison(expr: Node, positive: bool) -> str | None:
    left, right = expr.get("lexpr"), expr.get("rexpr")
    moving_left, moving_right = _anywhere(left), _anywhere(right)
    reason = moving_left or moving_right
    if not reason or reason.startswith(("chance", "row position")):
        return reason
    op = (strings(expr.get("name")) or [""])[-1]
    # A purge of old rows: column below the moving value (col < now() - ..., now() - ... > col).
    if positive and not (moving_left and moving_right):
        column, bound = (left, right) if moving_right else (right, left)
        below = op in _BELOW if moving_right else op in _ABOVE
        if below and _is_column(column) and not find_nodes(bound, frozenset({"ColumnRef", "SubLink"})):
            return None
    return reason


def _is_column(node: Node | None) -> bool:
    while node and "TypeCast" in node:
        node = node["TypeCast"].get("arg")
    return bool(node) and "ColumnRef" in node


def _anywhere(tree) -> str | None:
    """The first value anywhere in `tree` that differs between the copy and the real run."""
    if not tree:
        return None
    for kind, node in find_nodes(tree if isinstance(tree, list) else [tree],
                                 frozenset({"FuncCall", "SQLValueFunction", "A_Const", "ColumnRef",
                                            "RangeTableSample"})):
        if kind == "FuncCall":
            name = function_name(node)[1]
            if name in _RANDOM_FUNCTIONS:
                return f"chance ({name}())"
            if name in _MOVING_FUNCTIONS:
                return f"{name}()"
        elif kind == "SQLValueFunction":
            op = node.get("op", "SVFOP_CURRENT_DATE")  # the first enum value, left out when default
            if op.startswith(("SVFOP_CURRENT_DATE", "SVFOP_CURRENT_TIME", "SVFOP_LOCAL")):
                return op.removeprefix("SVFOP_").removesuffix("_N").lower()
        elif kind == "A_Const" and str(node.get("sval", {}).get("sval", "")).strip().lower() in _MOVING_WORDS:
            return f"'{node['sval']['sval']}' (the current time)"
        elif kind == "ColumnRef" and (strings(node.get("fields")) or [""])[-1] in _SYSTEM_COLUMNS:
            return f"row position ({strings(node.get('fields'))[-1]} differs in a restored copy)"
        elif kind == "RangeTableSample":
            return "chance (TABLESAMPLE)"
    return None


RULE = Rule(
    code="volatile-predicate",
    severity=FORBIDDEN,
    summary="A DELETE or UPDATE whose rows depend on when or how it runs (newer than now(), random(), ctid) "
            "cannot be judged by a rehearsal on an older copy.",
    hint="Name the rows by a fixed value instead (WHERE \"CreatedAt\" > '2024-05-01 12:00+00', or a list of ids "
         "you looked up), so the rehearsal touches exactly the rows production will.",
    check=check, on=MAY_CHANGE_ROWS, bad=tuple(BAD), good=tuple(GOOD),
)
