"""What a WHERE clause can be proven to select without looking at any row.

`matches_every_row` is true when the clause is missing or always true: `WHERE true`, `1=1`,
`'a'='a'`, `x IS NOT NULL OR TRUE`, `NOT false`, `x = x`, ... Whether a clause such as
`"Id" > 0` happens to match every row is a fact about the data: the rehearsal decides that
by counting rows on the restored copy.

Expressions are evaluated in SQL's three-valued logic (TRUE, FALSE, NULL); anything that
depends on a row or a function is UNKNOWN, and only a proven TRUE counts.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from .nodes import Node, const_value, same_expression, strings

UNKNOWN = object()  # depends on the row, a function, a setting, ...
NULL = None

_TRUE_WORDS = {"t", "true", "y", "yes", "on", "1"}
_FALSE_WORDS = {"f", "false", "n", "no", "off", "0"}
_NUMERIC_TYPES = {"int2", "int4", "int8", "integer", "smallint", "bigint", "int", "numeric", "decimal",
                  "float4", "float8", "real"}
_TEXT_TYPES = {"text", "varchar", "bpchar", "char", "name"}


def matches_every_row(where: Node | None) -> bool:
    """A WHERE clause that filters nothing: none at all, or one that is always true."""
    return where is None or truth(where) is True


def truth(node: Node) -> Any:
    """True, False, NULL or UNKNOWN: the clause's value for every row alike, when it has one."""
    if "BoolExpr" in node:
        return _bool_expr(node["BoolExpr"])
    if "A_Expr" in node:
        return _a_expr(node["A_Expr"])
    if "NullTest" in node:
        test = node["NullTest"]
        value = constant(test.get("arg"))
        if value is UNKNOWN:
            return UNKNOWN
        return (value is NULL) == (test.get("nulltesttype") == "IS_NULL")
    if "BooleanTest" in node:
        return _boolean_test(node["BooleanTest"])
    if "SubLink" in node:
        return _exists(node["SubLink"])
    return _as_bool(constant(node))


def constant(node: Node | None) -> Any:
    """The value of an expression that does not depend on any row (Python int, Decimal, str,
    bool or NULL), or UNKNOWN."""
    if not node:
        return UNKNOWN
    if "A_Const" in node:
        return NULL if node["A_Const"].get("isnull") else const_value(node)
    if "TypeCast" in node:
        return _cast(constant(node["TypeCast"].get("arg")), node["TypeCast"].get("typeName", {}))
    if "A_Expr" in node and node["A_Expr"].get("kind") == "AEXPR_OP":
        expr = node["A_Expr"]
        op = strings(expr.get("name"))[-1:]
        right = _number(constant(expr.get("rexpr")))
        if "lexpr" not in expr:
            return -right if op == ["-"] and right not in (UNKNOWN, NULL) else UNKNOWN
        left = _number(constant(expr.get("lexpr")))
        if UNKNOWN in (left, right) or op not in (["+"], ["-"], ["*"]):
            return truth(node) if op and op[0] in _COMPARE else UNKNOWN
        if NULL in (left, right):
            return NULL
        return left + right if op == ["+"] else left - right if op == ["-"] else left * right
    if "CoalesceExpr" in node:
        for arg in node["CoalesceExpr"].get("args", ()):
            value = constant(arg)
            if value is not NULL:
                return value
        return NULL
    if any(k in node for k in ("BoolExpr", "NullTest", "BooleanTest")):
        return truth(node)
    return UNKNOWN


def _bool_expr(expr: Node) -> Any:
    values = [truth(arg) for arg in expr.get("args", ())]
    op = expr.get("boolop")
    if op == "NOT_EXPR":
        value = values[0] if values else UNKNOWN
        return value if value is UNKNOWN or value is NULL else not value
    if op == "AND_EXPR":
        if any(v is False for v in values):
            return False
        if all(v is True for v in values):
            return True
        return UNKNOWN if any(v is UNKNOWN for v in values) else NULL
    if any(v is True for v in values) or _null_test_pair(expr.get("args", ())):
        return True
    if all(v is False for v in values):
        return False
    return UNKNOWN if any(v is UNKNOWN for v in values) else NULL


def _null_test_pair(args: list[Node]) -> bool:
    """`x IS NULL OR x IS NOT NULL`: true for every row whatever x is."""
    tests = [a["NullTest"] for a in args if "NullTest" in a]
    nulls = [t.get("arg") for t in tests if t.get("nulltesttype") == "IS_NULL"]
    not_nulls = [t.get("arg") for t in tests if t.get("nulltesttype") == "IS_NOT_NULL"]
    return any(same_expression(a, b) for a in nulls for b in not_nulls)


_COMPARE = {"=", "<>", "!=", "<", "<=", ">", ">="}


def _a_expr(expr: Node) -> Any:
    kind = expr.get("kind")
    op = (strings(expr.get("name")) or [""])[-1]
    left, right = expr.get("lexpr"), expr.get("rexpr")
    if kind in ("AEXPR_OP", "AEXPR_NOT_DISTINCT", "AEXPR_DISTINCT") and op in _COMPARE:
        if left is not None and same_expression(left, right):
            if kind == "AEXPR_NOT_DISTINCT" or (kind == "AEXPR_OP" and op in ("=", "<=", ">=")):
                return True  # every row, or every row where it is not NULL: treated as every row
            if kind == "AEXPR_DISTINCT" or op in ("<>", "!=", "<", ">"):
                return False
        a, b = constant(left), constant(right)
        if UNKNOWN in (a, b):
            return UNKNOWN
        if kind != "AEXPR_OP":
            same = a == b if NULL not in (a, b) else (a is NULL and b is NULL)
            return same if kind == "AEXPR_NOT_DISTINCT" else not same
        return _compare(a, op, b)
    if kind == "AEXPR_IN" and isinstance(right, dict) and "List" in right:
        a = constant(left)
        items = [constant(i) for i in right["List"].get("items", ())]
        results = [_compare(a, "=", b) for b in items] if a is not UNKNOWN else [UNKNOWN]
        found = True if any(r is True for r in results) else (
            False if all(r is False for r in results) else (UNKNOWN if UNKNOWN in results else NULL))
        if op == "=" or found is UNKNOWN or found is NULL:
            return found
        return not found
    return UNKNOWN


def _compare(a: Any, op: str, b: Any) -> Any:
    if a is UNKNOWN or b is UNKNOWN:
        return UNKNOWN
    if a is NULL or b is NULL:
        return NULL
    x, y = _number(a), _number(b)
    if x is UNKNOWN or y is UNKNOWN:
        if not (isinstance(a, str) and isinstance(b, str)) or op not in ("=", "<>", "!="):
            return UNKNOWN  # ordering of text depends on the collation
        x, y = a, b
    return {"=": x == y, "<>": x != y, "!=": x != y, "<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


def _number(value: Any) -> Any:
    if value is NULL or value is UNKNOWN:
        return value
    if isinstance(value, bool):
        return UNKNOWN
    if isinstance(value, int):
        return value
    try:
        return Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return UNKNOWN


def _cast(value: Any, type_name: Node) -> Any:
    if value is UNKNOWN or value is NULL:
        return value
    name = (strings(type_name.get("names")) or [""])[-1].lower()
    if name in ("bool", "boolean"):
        return _as_bool(value)
    if name in _NUMERIC_TYPES:
        return _number(value)
    if name in _TEXT_TYPES and not type_name.get("typmods"):
        return value if isinstance(value, str) else (UNKNOWN if isinstance(value, bool) else str(value))
    return UNKNOWN


def _as_bool(value: Any) -> Any:
    if value is NULL or value is UNKNOWN or isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    return UNKNOWN


def _boolean_test(test: Node) -> Any:
    value = truth(test.get("arg") or {})
    if value is UNKNOWN:
        return UNKNOWN
    return {
        "IS_TRUE": value is True, "IS_NOT_TRUE": value is not True,
        "IS_FALSE": value is False, "IS_NOT_FALSE": value is not False,
        "IS_UNKNOWN": value is NULL, "IS_NOT_UNKNOWN": value is not NULL,
    }.get(test.get("booltesttype"), UNKNOWN)


def _exists(link: Node) -> Any:
    """EXISTS (SELECT ... without FROM) is as true as its WHERE clause."""
    if link.get("subLinkType") != "EXISTS_SUBLINK":
        return UNKNOWN
    select = link.get("subselect", {}).get("SelectStmt")
    if not select or any(select.get(k) for k in ("fromClause", "havingClause", "limitCount", "larg", "valuesLists")):
        return UNKNOWN
    return True if matches_every_row(select.get("whereClause")) else UNKNOWN
