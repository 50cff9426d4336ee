"""EF Core's migration scripts (`dotnet ef migrations script`, Npgsql): the idempotent form's guard
blocks seen through, and the migration ids a script records in "__EFMigrationsHistory".

`--idempotent` wraps every statement of a migration in a DO block (IF EXISTS in a DOWN script):

    DO $EF$
    BEGIN
        IF NOT EXISTS(SELECT 1 FROM "__EFMigrationsHistory" WHERE "MigrationId" = '20261202120001_DropBody') THEN
        ALTER TABLE "Notes" DROP COLUMN "Body";
        END IF;
    END $EF$;

A DO block whose whole body is exactly that guard around plain SQL statements is analysed as those
statements, each at its own line, with the migration id beside its findings. PL/pgSQL runs them as
written: a utility statement verbatim, a row-changing one with the block's only variable, FOUND,
put in for that name (so a statement naming it keeps the block opaque). The block itself is still
what runs: one command, sent as written. Anything else (EXECUTE, PERFORM, RAISE, loops,
assignments, ELSE, another condition or table, OR, declared variables, an EXCEPTION handler, another
language, a body that is not dollar-quoted) keeps the block opaque, and the do-block rule asks
for an approver.

The body is read by PL/pgSQL's own parser (libpg_query, through pglast's parse_plpgsql_json), the
statements and the condition by PostgreSQL's SQL parser; the source is cut only at the scanner's
tokens, and each statement's text must be the one PL/pgSQL found, or the block stays opaque.
"""
from __future__ import annotations

import dataclasses
import json

from pglast.parser import ParseError, parse_plpgsql_json, parse_sql_json, scan

from handlers.errors import UsageError

from .nodes import Node, const_value, find_nodes, strings
from .parsing import Guard, Statement, parse_statements

HISTORY_TABLE = "__EFMigrationsHistory"
MIGRATION_ID = "MigrationId"


def see_through_guards(statements: list[Statement]) -> list[Statement]:
    """The statements the rules analyse: each DO block that is exactly EF Core's guard replaced by the
    statements it guards (numbered in order with the rest); every other statement as it is."""
    if not any(s.kind == "DoStmt" for s in statements):
        return statements
    seen: list[Statement] = []
    for stmt in statements:
        inner = guarded(stmt) if stmt.kind == "DoStmt" else None
        seen.extend(inner if isinstance(inner, list) else [stmt])
    return [s if s.index == i else dataclasses.replace(s, index=i) for i, s in enumerate(seen)]


def guarded(stmt: Statement) -> list[Statement] | str:
    """The statements a DO block guards, when it is exactly EF Core's guard; else why it is not."""
    args = {a["DefElem"]["defname"]: a["DefElem"] for a in stmt.node.get("args", ()) if "DefElem" in a}
    language = (args.get("language", {}).get("arg", {}).get("String", {}).get("sval") or "plpgsql").lower()
    if language != "plpgsql":
        return f"it is written in LANGUAGE {language}"
    code = args.get("as")
    body = code.get("arg", {}).get("String", {}).get("sval") if code else None
    if body is None:
        return "it has no body"
    start = _body_start(stmt, code.get("location"), body)
    if start is None:
        return "its body is not dollar-quoted"
    function = _plpgsql(body)
    if isinstance(function, str):
        return function
    block = function.get("action", {}).get("PLpgSQL_stmt_block", {})
    if len(function.get("datums", ())) != 1 or set(block) - {"lineno", "body"}:
        return "it declares variables, a label or an EXCEPTION handler"
    steps = block.get("body", [])
    if steps and steps[-1] == {"PLpgSQL_stmt_return": {}}:  # the RETURN PL/pgSQL adds itself
        steps = steps[:-1]
    if len(steps) != 1 or "PLpgSQL_stmt_if" not in steps[0]:
        other = next((kind for step in steps for kind in step if kind != "PLpgSQL_stmt_if"), None)
        return f"it runs {_PLPGSQL_NAMES.get(other, 'PL/pgSQL code')}" if other else "its body is not one IF"
    branch = steps[0]["PLpgSQL_stmt_if"]
    if set(branch) - {"lineno", "cond", "then_body"}:
        return "its IF has an ELSIF or ELSE"
    guard = _guard(branch.get("cond", {}).get("PLpgSQL_expr", {}).get("query", ""), stmt.line)
    if isinstance(guard, str):
        return guard
    queries = []
    for step in branch.get("then_body", ()):
        ((kind, fields),) = step.items()
        if kind != "PLpgSQL_stmt_execsql":
            return f"it runs {_PLPGSQL_NAMES.get(kind, 'PL/pgSQL code')}, not plain SQL"
        if set(fields) - {"lineno", "sqlstmt"}:
            return "a statement in it stores its result INTO variables"
        queries.append(fields["sqlstmt"]["PLpgSQL_expr"]["query"])
    spans = _statement_spans(body, len(queries))
    if spans is None or [body[a:b] for a, b in spans] != queries:
        return "its statements could not be matched to its text"
    inner = []
    for query, (a, b) in zip(queries, spans):
        found = _statement(stmt, query, start + len(body[:a].encode("utf-8")), start + len(body[:b].encode("utf-8")),
                           guard)
        if isinstance(found, str):
            return found
        inner.append(found)
    return inner


def _body_start(stmt: Statement, location: int | None, body: str) -> int | None:
    """The byte offset of the body in the file, when it is dollar-quoted there (the text between
    the tags is then the body itself, byte for byte)."""
    source = stmt.source
    if location is None or source[location:location + 1] != b"$":
        return None
    close = source.find(b"$", location + 1)
    if close == -1:
        return None
    tag = source[location:close + 1]
    begin, raw = close + 1, body.encode("utf-8")
    if source[begin:begin + len(raw)] != raw or source[begin + len(raw):begin + len(raw) + len(tag)] != tag:
        return None
    return begin


def _plpgsql(body: str) -> dict | str:
    """The body read by PL/pgSQL's parser, as a function (libpg_query parses no DO block on its own)."""
    tag, n = "$dbops$", 0
    while tag in body:
        n += 1
        tag = f"$dbops{n}$"
    try:
        parsed = json.loads(parse_plpgsql_json(f"CREATE FUNCTION dbops_guard() RETURNS void LANGUAGE plpgsql AS "
                                               f"{tag}{body}{tag}"))
    except ParseError:
        return "its body does not parse as PL/pgSQL"
    if len(parsed) != 1 or "PLpgSQL_function" not in parsed[0]:
        return "its body does not parse as PL/pgSQL"
    return parsed[0]["PLpgSQL_function"]


_PLPGSQL_NAMES = {
    "PLpgSQL_stmt_dynexecute": "EXECUTE (dynamic SQL)", "PLpgSQL_stmt_perform": "PERFORM",
    "PLpgSQL_stmt_raise": "RAISE", "PLpgSQL_stmt_assign": "an assignment", "PLpgSQL_stmt_if": "a nested IF",
    "PLpgSQL_stmt_loop": "a loop", "PLpgSQL_stmt_while": "a loop", "PLpgSQL_stmt_fori": "a loop",
    "PLpgSQL_stmt_fors": "a loop", "PLpgSQL_stmt_forc": "a loop", "PLpgSQL_stmt_foreach_a": "a loop",
    "PLpgSQL_stmt_dynfors": "a loop over dynamic SQL", "PLpgSQL_stmt_return": "RETURN",
    "PLpgSQL_stmt_call": "CALL", "PLpgSQL_stmt_commit": "COMMIT", "PLpgSQL_stmt_rollback": "ROLLBACK",
    "PLpgSQL_stmt_block": "a nested block", "PLpgSQL_stmt_case": "CASE",
    "PLpgSQL_stmt_execsql": "SQL outside an IF",
}


def _guard(condition: str, line: int) -> Guard | str:
    """The guard `[NOT] EXISTS(SELECT 1 FROM "__EFMigrationsHistory" WHERE "MigrationId" = '<id>')`,
    read by the SQL parser as a SELECT of that expression; anything else is not the guard."""
    not_guard = f"its condition is not [NOT] EXISTS(SELECT 1 FROM \"{HISTORY_TABLE}\" WHERE \"{MIGRATION_ID}\" = '...')"
    try:
        tree = json.loads(parse_sql_json("SELECT " + condition))
    except ParseError:
        return not_guard
    stmts = tree.get("stmts", [])
    select = stmts[0]["stmt"].get("SelectStmt") if len(stmts) == 1 else None
    targets = _plain_select(select, set())
    if targets is None:
        return not_guard
    expr, recorded = targets, True
    if "BoolExpr" in expr and expr["BoolExpr"].get("boolop") == "NOT_EXPR" and len(expr["BoolExpr"]["args"]) == 1:
        expr, recorded = expr["BoolExpr"]["args"][0], False
    link = expr.get("SubLink", {})
    if link.get("subLinkType") != "EXISTS_SUBLINK" or set(link) - {"subLinkType", "subselect", "location"}:
        return not_guard
    inner = link.get("subselect", {}).get("SelectStmt")
    if _plain_select(inner, {"fromClause", "whereClause"}) is None:
        return not_guard
    tables = inner.get("fromClause", [])
    table = tables[0].get("RangeVar", {}) if len(tables) == 1 else {}
    if table.get("relname") != HISTORY_TABLE or set(table) - {"schemaname", "relname", "inh", "relpersistence",
                                                              "location"}:
        return f"its condition reads another table than \"{HISTORY_TABLE}\""
    where = inner["whereClause"].get("A_Expr", {})
    migration_id = const_value(where.get("rexpr"))
    if (where.get("kind") != "AEXPR_OP" or strings(where.get("name")) != ["="]
            or strings(where.get("lexpr", {}).get("ColumnRef", {}).get("fields")) != [MIGRATION_ID]
            or not isinstance(migration_id, str) or not migration_id):
        return f"its condition is not \"{MIGRATION_ID}\" = one migration id"
    return Guard(migration_id, recorded, line)


def _plain_select(select: Node | None, allowed: set[str]) -> Node | None:
    """The one expression a `SELECT <expr> [FROM ...] [WHERE ...]` selects (`allowed`: which of
    those clauses it may have), or None when it is anything more (a WITH, GROUP BY, LIMIT, UNION...)."""
    if not select or set(select) - allowed - {"targetList", "limitOption", "op"}:
        return None
    if select.get("limitOption") != "LIMIT_OPTION_DEFAULT" or select.get("op") != "SETOP_NONE":
        return None
    targets = select.get("targetList", [])
    if len(targets) != 1 or set(targets[0].get("ResTarget", {})) - {"val", "location"}:
        return None
    return targets[0]["ResTarget"].get("val") or None


_COMMENTS = ("SQL_COMMENT", "C_COMMENT")
_SPACE = " \t\n\r\f\v"  # what PL/pgSQL trims from the end of a statement's text


def _statement_spans(body: str, count: int) -> list[tuple[int, int]] | None:
    """Where each of the `count` statements between THEN and END IF is in the body (character
    offsets), cut as PL/pgSQL cuts them: from the first token to the `;` outside parentheses,
    trailing white space left out. None when the tokens are not BEGIN IF ... THEN ... END IF."""
    tokens = [t for t in scan(body) if t.name not in _COMMENTS]
    names = [t.name for t in tokens]
    if names[:2] != ["BEGIN_P", "IF_P"] or "THEN" not in names:
        return None
    at = names.index("THEN") + 1
    spans = []
    for _ in range(count):
        first, depth = at, 0
        while at < len(tokens) and not (names[at] == "ASCII_59" and depth == 0):
            depth += {"ASCII_40": 1, "ASCII_41": -1}.get(names[at], 0)
            at += 1
        if at == len(tokens) or first == at:
            return None
        spans.append((tokens[first].start, len(body[tokens[first].start:tokens[at].start].rstrip(_SPACE))
                      + tokens[first].start))
        at += 1
    if names[at:at + 3] != ["END_P", "IF_P", "ASCII_59"]:
        return None
    return spans


def _statement(block: Statement, query: str, start: int, end: int, guard: Guard) -> Statement | str:
    """One guarded statement, parsed on its own and placed where it is in the file."""
    try:
        parsed = parse_statements(query, "DO block")
    except UsageError:
        return "a statement in it does not parse"
    if len(parsed) != 1:
        return "a statement in it does not parse as one statement"
    inner = parsed[0]
    if inner.kind in ("DoStmt", "TransactionStmt"):
        return "it holds a DO block or transaction control"
    for _, ref in find_nodes({inner.kind: inner.node}, frozenset({"ColumnRef", "ParamRef"})):
        if "fields" not in ref or [s.lower() for s in strings(ref["fields"])[:1]] == ["found"]:
            return "a statement in it names FOUND or a parameter, which PL/pgSQL fills in"
    source = block.source
    line = block.line + source.count(b"\n", block.start, start)
    return dataclasses.replace(inner, line=line, end_line=line + source.count(b"\n", start, end), start=start,
                               end=end, source=source, ignored=block.ignored, guard=guard)


def recorded_migrations(statements: list[Statement]) -> list[str]:
    """The EF migration ids a script adds to "__EFMigrationsHistory" (INSERT ... VALUES ('<id>', ...)),
    guarded or not, in order: what applying it records."""
    ids: list[str] = []
    for stmt in see_through_guards(statements):
        if stmt.kind != "InsertStmt" or stmt.node.get("relation", {}).get("relname") != HISTORY_TABLE:
            continue
        for row in stmt.node.get("selectStmt", {}).get("SelectStmt", {}).get("valuesLists", ()):
            value = const_value((row.get("List", {}).get("items") or [None])[0])
            if isinstance(value, str) and value not in ids:
                ids.append(value)
    return ids
