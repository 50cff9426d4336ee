"""create-function: function bodies are not checked; replacing a function changes what its callers run."""
from ..nodes import strings
from ..rule import FORBIDDEN, WARNING, Hit, Rule

BAD = [
    "CREATE OR REPLACE FUNCTION notes_touch() RETURNS trigger LANGUAGE plpgsql"
    " AS $$ BEGIN DELETE FROM \"Notes\"; RETURN NEW; END $$;",
    "CREATE FUNCTION evil() RETURNS void LANGUAGE c AS 'evil.so', 'evil';",
    # a new function is a warning: its body is not checked, and calling it is forbidden
    "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ DROP TABLE \"Notes\" $$;",
]
GOOD = [
    'ALTER TABLE "Notes" ADD COLUMN "Color" text;',
]

_UNTRUSTED = {"c", "internal", "plpython3u", "plpythonu", "plperlu", "pltclu"}


def check(stmt, ctx):
    node = stmt.node
    what = "procedure" if node.get("is_procedure") else "function"
    name = ".".join(strings(node.get("funcname")))
    language = next((o["DefElem"]["arg"].get("String", {}).get("sval", "") for o in node.get("options", ())
                     if o.get("DefElem", {}).get("defname") == "language"), "sql").lower()
    if language in _UNTRUSTED:
        yield f"creates {what} {name} in the untrusted language {language}: it can do anything the server can"
    elif node.get("replace"):
        yield (f"replaces {what} {name}: if it already exists, whatever calls it (triggers, defaults, views, "
               "the app) runs a new body this check cannot analyse")
    else:
        yield Hit(f"creates {what} {name}: its body is not checked (a call of it in a migration is forbidden)", WARNING)


RULE = Rule(
    code="create-function",
    severity=FORBIDDEN,
    summary="Function bodies are opaque to this check: replacing a function changes code that triggers and "
            "the app already run; a new one is only a warning.",
    hint="Keep function changes small and reviewed; create a new function under a new name (a warning) "
         "and switch callers to it rather than replacing one in place.",
    check=check, on=("CreateFunctionStmt",), bad=tuple(BAD), good=tuple(GOOD),
)
