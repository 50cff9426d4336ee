"""extension: CREATE EXTENSION outside a short list of extensions that only add types and functions."""
from ..rule import FORBIDDEN, Rule

BAD = [
    "CREATE EXTENSION dblink;",
    "CREATE EXTENSION IF NOT EXISTS adminpack;",
    'CREATE EXTENSION "postgres_fdw" SCHEMA public;',
    "ALTER EXTENSION pg_trgm UPDATE;",
    "ALTER EXTENSION citext ADD FUNCTION f();",
]
GOOD = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm;",
    'CREATE EXTENSION IF NOT EXISTS "uuid-ossp";',
    "CREATE EXTENSION citext;",
]

# Extensions whose install scripts only create data types, operators, index support and pure
# functions. Not here: dblink and postgres_fdw (reach other servers), adminpack and file_fdw
# (server files), plpython/plperl untrusted languages, anything unknown.
SAFE_EXTENSIONS = frozenset({
    "pg_trgm", "citext", "pgcrypto", "uuid-ossp", "btree_gin", "btree_gist", "hstore", "unaccent",
    "fuzzystrmatch", "intarray", "ltree", "cube", "earthdistance", "isn", "seg", "tablefunc", "tsm_system_rows",
})


def check(stmt, ctx):
    name = stmt.node.get("extname", "")
    if stmt.kind == "CreateExtensionStmt":
        if name not in SAFE_EXTENSIONS:
            yield (f"creates extension {name}, which is not on the list of extensions known to add only "
                   "types and functions")
    else:
        yield f"alters extension {name}: its update scripts and members are not checked"


RULE = Rule(
    code="extension",
    severity=FORBIDDEN,
    summary="An extension's install script runs as part of the migration, and some extensions reach files, "
            "programs or other servers (dblink, adminpack, postgres_fdw).",
    hint="Extensions outside the known list (handlers/migrations/rules/extension.py) need approval; install "
         "them once by hand as the database owner rather than in a migration.",
    check=check, on=("CreateExtensionStmt", "AlterExtensionStmt", "AlterExtensionContentsStmt"),
    bad=tuple(BAD), good=tuple(GOOD),
)
