"""Settings that change how the server reads SQL text, which a migration may not touch.

The analyser (pglast, PostgreSQL's own parser) always reads SQL with standard_conforming_strings
on, in UTF-8. A server reading the same text with standard strings off sees `'tidy\\', '` as an
unfinished string, so the text after it (`; DELETE ...`) is a command the analyser never saw. So
dbops pins these settings on every session that runs a migration's statements (session.py), sends
each statement as one command, checks after every statement that they still hold, and refuses a
migration that names them anywhere: SET, RESET, set_config(), ALTER ROLE/DATABASE/FUNCTION ... SET,
or the text of a DO block or function body. A name built at run time (`'standard_' || ...`) is
not seen here; the check after every statement stops the migration there.

No psycopg here: `dbops migrate check` without a database refuses the same files.
"""
from __future__ import annotations

import re

from handlers.errors import UsageError

from .parsing import Statement

# name -> the value dbops pins (the parser's own reading)
LEXING_SETTINGS = {
    "standard_conforming_strings": "on",
    "backslash_quote": "safe_encoding",
    "escape_string_warning": "on",
    "client_encoding": "UTF8",
}
_NAMED = re.compile("|".join(sorted(LEXING_SETTINGS)))


def lexing_setting_named(stmt: Statement) -> str | None:
    """The first lexing setting the statement names anywhere in its parse tree (an identifier, a string
    constant, a DO block's or a function's body), in any case; None when it names none.

    The search runs over the parser's JSON output of this statement (names, constants and bodies,
    decoded from U&'' escapes and quoting), not over the SQL text."""
    start, end = stmt.tree_span
    tree = stmt.tree_json[start:end] if end >= 0 else repr(stmt.node)
    found = _NAMED.search(tree.lower())
    return found.group(0) if found else None


def refuse_lexing_changes(statements: list[Statement], filename: str) -> None:
    """Raise UsageError naming the file and line of the first statement that names a lexing setting."""
    for stmt in statements:
        name = lexing_setting_named(stmt)
        if name is not None:
            raise UsageError(
                f"{filename} line {stmt.line}: it names {name}, which changes how the server reads SQL text: "
                f"dbops runs every statement with {name} = {LEXING_SETTINGS[name]}, as its analyser reads it, "
                "and refuses migrations that set it (SET, set_config, ALTER ... SET, DO blocks, function bodies): "
                "remove it")
