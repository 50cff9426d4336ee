"""One statement from pg_stat_statements, read with PostgreSQL's own parser (pglast, through
handlers.migrations.parsing): its tables, the columns an index could serve (compared with `=` or `IN`,
ranges, join keys, `ORDER BY` of a `LIMIT` query), which `$n` is compared with which column (to give
it real values), and whether the copy may run it.

The text is production's, so hostile: the copy runs with `EXPLAIN ANALYZE` only a plain SELECT whose
every function is on a short list (no data-modifying WITH, no FOR UPDATE, no SELECT INTO); writes are
only EXPLAINed, and a statement calling any other function is not planned at all (planning may call an
immutable function to fold constants).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from ...errors import UsageError
from ...migrations.parsing import parse_statements

EQUALITY, RANGE, JOIN, ORDER = "equality", "range", "join", "order"
RANGE_OPERATORS = frozenset({"<", ">", "<=", ">="})
WRITES = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})
PLANNED = {"SelectStmt": "select", "UpdateStmt": "update", "DeleteStmt": "delete"}

# Functions a statement may call on the copy: built-in, without side effects, reading no files or
# settings. Anything else (a user's function, dblink, pg_read_file, set_config, pg_sleep) is refused.
ALLOWED_FUNCTIONS = frozenset("""
    count sum avg min max bool_and bool_or every array_agg string_agg json_agg jsonb_agg json_object_agg
    jsonb_object_agg row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value
    lower upper length char_length octet_length btrim ltrim rtrim trim substring substr position strpos
    left right replace concat concat_ws split_part starts_with to_char to_number to_date to_timestamp
    date_trunc date_part extract age now abs round floor ceil ceiling trunc mod sign greatest least
    unnest array_length cardinality array_position array_remove array_append array_cat
    jsonb_build_object json_build_object jsonb_build_array json_build_array jsonb_array_length
    jsonb_extract_path_text json_extract_path_text jsonb_typeof to_jsonb to_json
    md5 encode decode generate_series
""".split())


@dataclass(frozen=True)
class ColumnUse:
    table: tuple[str, str]
    column: str
    kind: str  # EQUALITY, RANGE, JOIN or ORDER


@dataclass(frozen=True)
class Param:
    """What `$n` stands for: a value of a column (sampled from the copy), or a LIMIT/OFFSET count."""

    number: int
    form: str  # "value", "array" (= ANY($n)), "limit", "offset"
    table: tuple[str, str] | None = None
    column: str | None = None
    source: str = ""  # the FROM item it belongs to: parameters of one item are sampled from one row


@dataclass
class Statement:
    text: str  # exactly the one statement the parser saw
    kind: str  # "select", "update" or "delete"
    tables: list[tuple[str, str]]
    uses: list[ColumnUse]
    params: dict[int, Param]
    param_count: int
    limited: bool  # has a LIMIT: its ORDER BY columns can be served by an index
    runnable: str | None  # None: may run with EXPLAIN ANALYZE on the copy; else why not
    plannable: str | None  # None: may be EXPLAINed; else why not
    notes: list[str] = field(default_factory=list)

    @property
    def unmapped(self) -> list[int]:
        """`$n` the copy cannot give a real value to."""
        return [n for n in range(1, self.param_count + 1) if n not in self.params]


class Names:
    """Table and column names as the target has them, and its search_path."""

    def __init__(self, columns: dict[tuple[str, str], tuple[str, ...]], search_path: list[str]) -> None:
        self.columns = columns
        self.search_path = search_path
        self.schemas_of: dict[str, list[str]] = {}
        for schema, name in columns:
            self.schemas_of.setdefault(name, []).append(schema)

    def resolve(self, schema: str | None, name: str, notes: list[str]) -> tuple[str, str] | None:
        if schema is not None:
            return (schema, name) if (schema, name) in self.columns else None
        found = self.schemas_of.get(name, [])
        chosen = next((s for s in self.search_path if s in found), None)
        if chosen is not None and len(found) > 1:
            notes.append(f"{name} is in schemas {', '.join(sorted(found))}: read as {chosen}.{name} with the "
                         f"search_path {', '.join(self.search_path)} (pg_stat_statements does not record the "
                         "application's)")
        return (chosen, name) if chosen else None


class Skipped(Exception):
    """Not a statement an index could be proven for (utility, INSERT, unparsable, several statements)."""


def read_statement(text: str, names: Names) -> Statement:
    try:
        parsed = parse_statements(text, "pg_stat_statements")
    except UsageError as exc:
        raise Skipped(f"does not parse: {exc}") from None
    if len(parsed) != 1:
        raise Skipped("not one statement")
    stmt = parsed[0]
    if stmt.kind not in PLANNED:
        raise Skipped(f"a {stmt.kind}")
    reader = _Reader(names)
    if stmt.kind == "SelectStmt":
        reader.select(stmt.node, [], frozenset(), top=True)
    else:
        reader.write(stmt.node)
    plannable, runnable = _safety(stmt.kind, stmt.node)
    tables = list(dict.fromkeys(reader.tables))
    return Statement(stmt.text, PLANNED[stmt.kind], tables, list(dict.fromkeys(reader.uses)), reader.params,
                     _max_param(stmt.node), reader.limited, runnable, plannable, reader.notes)


# -- safety ----------------------------------------------------------------------------------

def _safety(kind: str, node: dict) -> tuple[str | None, str | None]:
    """(why it may not be EXPLAINed, why it may not run with ANALYZE); None where it may."""
    if kind == "SelectStmt" and node.get("intoClause"):
        return "SELECT INTO creates a table", "SELECT INTO creates a table"
    for name, value in _nodes(node):
        if name == "FuncCall":
            parts = _strings(value.get("funcname", []))
            function = parts[-1].lower() if parts else "?"
            schema = parts[0].lower() if len(parts) > 1 else None
            if function not in ALLOWED_FUNCTIONS or schema not in (None, "pg_catalog"):
                why = f"calls {'.'.join(parts)}(), which is not on the list of functions the copy may run"
                return why, why
        elif name == "A_Expr":
            parts = _strings(value.get("name", []))
            if len(parts) > 1 and parts[0].lower() != "pg_catalog":
                why = f"uses the operator {'.'.join(parts)}, not one of PostgreSQL's own"
                return why, why
    if kind != "SelectStmt":
        return None, "a write: only EXPLAINed, never run"
    if any(name in WRITES for name, _ in _nodes(node)):
        return None, "a data-modifying WITH: only EXPLAINed, never run"
    if any(name == "LockingClause" for name, _ in _nodes(node)):
        return None, "locks rows (FOR UPDATE/SHARE): only EXPLAINed, never run"
    return None, None


def _nodes(tree: Any) -> Iterator[tuple[str, dict]]:
    """Every node of a parse tree as (kind, fields)."""
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key[:1].isupper() and isinstance(value, dict):
                    yield key, value
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


def _strings(items: list) -> list[str]:
    return [i["String"]["sval"] for i in items if "String" in i]


def _max_param(node: dict) -> int:
    return max((v.get("number", 0) for name, v in _nodes(node) if name == "ParamRef"), default=0)


# -- what the statement reads ------------------------------------------------------------------

@dataclass
class _Item:
    """One FROM item in scope: its alias, the table it is (None: a subquery, function or CTE)."""

    alias: str
    table: tuple[str, str] | None
    source: str


class _Reader:
    def __init__(self, names: Names) -> None:
        self.names = names
        self.tables: list[tuple[str, str]] = []
        self.uses: list[ColumnUse] = []
        self.params: dict[int, Param] = {}
        self.notes: list[str] = []
        self.limited = False
        self._items = 0

    # statements
    def select(self, node: dict, outer: list[_Item], ctes: frozenset[str], top: bool = False) -> None:
        if node.get("op", "SETOP_NONE") != "SETOP_NONE":
            for side in ("larg", "rarg"):
                if node.get(side):
                    self.select(node[side], outer, ctes)
            return
        with_clause = node.get("withClause") or {}
        ctes = ctes | {c["CommonTableExpr"]["ctename"] for c in with_clause.get("ctes", [])}
        for cte in with_clause.get("ctes", []):
            self.any_statement(cte["CommonTableExpr"].get("ctequery", {}), outer, ctes)
        scope: list[_Item] = []
        quals: list[Any] = []
        for item in node.get("fromClause", []):
            self.from_item(item, scope, quals, ctes)
        scope += outer
        for qual in [*quals, node.get("whereClause")]:
            if qual is not None:
                self.predicates(qual, scope, ctes)
        for part in ("targetList", "havingClause", "groupClause"):
            self.sublinks(node.get(part), scope, ctes)
        limit, offset = node.get("limitCount"), node.get("limitOffset")
        if limit is not None:
            self.limited = self.limited or top
            self.count_param(limit, "limit")
            for sort in node.get("sortClause", []):
                found = self.column(_unwrap(sort.get("SortBy", {}).get("node")), scope)
                if found:
                    self.uses.append(ColumnUse(found[0].table, found[1], ORDER))
        if offset is not None:
            self.count_param(offset, "offset")

    def write(self, node: dict) -> None:
        scope: list[_Item] = []
        quals: list[Any] = []
        self.from_item({"RangeVar": node["relation"]}, scope, quals, frozenset())
        for item in node.get("fromClause", []) + node.get("usingClause", []):
            self.from_item(item, scope, quals, frozenset())
        for qual in [*quals, node.get("whereClause")]:
            if qual is not None:
                self.predicates(qual, scope, frozenset())

    def any_statement(self, wrapped: dict, outer: list[_Item], ctes: frozenset[str]) -> None:
        if "SelectStmt" in wrapped:
            self.select(wrapped["SelectStmt"], outer, ctes)

    def from_item(self, item: dict, scope: list[_Item], quals: list[Any], ctes: frozenset[str]) -> None:
        self._items += 1
        source = f"item{self._items}"
        if "RangeVar" in item:
            rv = item["RangeVar"]
            alias = (rv.get("alias") or {}).get("aliasname") or rv["relname"]
            table = None
            if not (rv.get("schemaname") is None and rv["relname"] in ctes):
                table = self.names.resolve(rv.get("schemaname"), rv["relname"], self.notes)
            if table is not None:
                self.tables.append(table)
            scope.append(_Item(alias, table, source))
        elif "JoinExpr" in item:
            join = item["JoinExpr"]
            self.from_item(join["larg"], scope, quals, ctes)
            self.from_item(join["rarg"], scope, quals, ctes)
            if join.get("quals") is not None:
                quals.append(join["quals"])
        elif "RangeSubselect" in item:
            sub = item["RangeSubselect"]
            self.any_statement(sub.get("subquery", {}), [], ctes)
            scope.append(_Item((sub.get("alias") or {}).get("aliasname", ""), None, source))
        else:  # a function, VALUES, XMLTABLE...: its columns are unknown
            scope.append(_Item(_alias_of(item), None, source))

    # expressions
    def predicates(self, expr: Any, scope: list[_Item], ctes: frozenset[str]) -> None:
        if not isinstance(expr, dict):
            return
        if "BoolExpr" in expr:
            b = expr["BoolExpr"]
            for arg in b.get("args", []):
                if b.get("boolop") == "AND_EXPR":
                    self.predicates(arg, scope, ctes)
                else:  # OR, NOT: no single index column to serve; subqueries inside still count
                    self.sublinks(arg, scope, ctes)
            return
        if "NullTest" in expr:
            t = expr["NullTest"]
            found = self.column(_unwrap(t.get("arg")), scope)
            if found and t.get("nulltesttype") == "IS_NULL":
                self.uses.append(ColumnUse(found[0].table, found[1], EQUALITY))
            return
        if "A_Expr" not in expr:
            self.sublinks(expr, scope, ctes)
            return
        a = expr["A_Expr"]
        kind, op = a.get("kind"), "".join(_strings(a.get("name", [])))
        left, right = _unwrap(a.get("lexpr")), _unwrap(a.get("rexpr"))
        lcol, rcol = self.column(left, scope), self.column(right, scope)
        if kind == "AEXPR_OP" and op == "=" and lcol and rcol:
            if lcol[0].source != rcol[0].source:
                self.uses += [ColumnUse(lcol[0].table, lcol[1], JOIN), ColumnUse(rcol[0].table, rcol[1], JOIN)]
        elif kind == "AEXPR_OP" and (op == "=" or op in RANGE_OPERATORS):
            use = EQUALITY if op == "=" else RANGE
            for col, other in ((lcol, right), (rcol, left)):
                if col:
                    self.uses.append(ColumnUse(col[0].table, col[1], use))
                    self.value_param(other, col, "value")
                    break
        elif kind in ("AEXPR_IN", "AEXPR_OP_ANY", "AEXPR_BETWEEN") and lcol and (op == "=" or kind == "AEXPR_BETWEEN"):
            self.uses.append(ColumnUse(lcol[0].table, lcol[1], RANGE if kind == "AEXPR_BETWEEN" else EQUALITY))
            items = right.get("List", {}).get("items", []) if isinstance(right, dict) and "List" in right else [right]
            for value in items:
                self.value_param(_unwrap(value), lcol, "array" if kind == "AEXPR_OP_ANY" else "value")
        elif kind in ("AEXPR_LIKE", "AEXPR_ILIKE") and lcol:
            self.value_param(right, lcol, "value")  # given a real value; no b-tree candidate (collation-bound)
        self.sublinks(left, scope, ctes)
        self.sublinks(right, scope, ctes)

    def sublinks(self, tree: Any, scope: list[_Item], ctes: frozenset[str]) -> None:
        """Subqueries anywhere in `tree` are read with `scope` as their outer scope."""
        if isinstance(tree, list):
            for item in tree:
                self.sublinks(item, scope, ctes)
        elif isinstance(tree, dict):
            if "SubLink" in tree:
                self.any_statement(tree["SubLink"].get("subselect", {}), scope, ctes)
                self.sublinks(tree["SubLink"].get("testexpr"), scope, ctes)
                return
            for value in tree.values():
                if isinstance(value, (dict, list)):
                    self.sublinks(value, scope, ctes)

    def column(self, expr: Any, scope: list[_Item]) -> tuple[_Item, str] | None:
        """The table column a ColumnRef names, when it names exactly one."""
        if not isinstance(expr, dict) or "ColumnRef" not in expr:
            return None
        fields = expr["ColumnRef"].get("fields", [])
        if not fields or "String" not in fields[-1]:
            return None
        parts = _strings(fields)
        column, qualifier = parts[-1], parts[:-1]
        if qualifier:
            matches = [i for i in scope if i.alias == qualifier[-1]]
            if matches and matches[0].table is not None and column in self.names.columns[matches[0].table]:
                return matches[0], column
            return None
        if any(i.table is None for i in scope):
            return None  # could be a subquery's or function's column
        owners = [i for i in scope if column in self.names.columns[i.table]]
        return (owners[0], column) if len(owners) == 1 else None

    def value_param(self, expr: Any, col: tuple[_Item, str], form: str) -> None:
        if isinstance(expr, dict) and "ParamRef" in expr:
            number = expr["ParamRef"].get("number", 0)
            if number and number not in self.params:
                self.params[number] = Param(number, form, col[0].table, col[1], col[0].source)

    def count_param(self, expr: Any, form: str) -> None:
        expr = _unwrap(expr)
        if isinstance(expr, dict) and "ParamRef" in expr:
            number = expr["ParamRef"].get("number", 0)
            if number and number not in self.params:
                self.params[number] = Param(number, form)


def _unwrap(expr: Any) -> Any:
    """`$1::int` is `$1` to the planner's choice of index."""
    while isinstance(expr, dict) and "TypeCast" in expr and isinstance(expr["TypeCast"].get("arg"), dict) \
            and "ParamRef" in expr["TypeCast"]["arg"]:
        expr = expr["TypeCast"]["arg"]
    return expr


def _alias_of(item: dict) -> str:
    for value in item.values():
        if isinstance(value, dict):
            return (value.get("alias") or {}).get("aliasname", "")
    return ""
