"""trigger: triggers run functions this check cannot see, on every write from then on."""
from ..nodes import alter_table_cmds, strings, table_of
from ..rule import FORBIDDEN, Rule

BAD = [
    'CREATE TRIGGER notes_touch BEFORE UPDATE ON "Notes" FOR EACH ROW EXECUTE FUNCTION notes_touch();',
    'CREATE OR REPLACE TRIGGER t AFTER INSERT ON "Boards" FOR EACH STATEMENT EXECUTE PROCEDURE wipe();',
    "CREATE EVENT TRIGGER audit_ddl ON ddl_command_end EXECUTE FUNCTION log_ddl();",
    'ALTER TABLE "Notes" DISABLE TRIGGER ALL;',
    'ALTER TABLE "Notes" ENABLE ALWAYS TRIGGER notes_touch;',
]
GOOD = [
    'DROP TRIGGER IF EXISTS notes_touch ON "Notes";',
    'CREATE INDEX CONCURRENTLY "IX_Notes_Title" ON "Notes" ("Title");',
]

TABLE_CMDS = {
    "AT_EnableTrig": "enables a trigger on", "AT_EnableAlwaysTrig": "enables a trigger (always) on",
    "AT_EnableReplicaTrig": "enables a replica trigger on", "AT_EnableTrigAll": "enables every trigger on",
    "AT_EnableTrigUser": "enables the user triggers on", "AT_DisableTrig": "disables a trigger on",
    "AT_DisableTrigAll": "disables every trigger (foreign keys too) on",
    "AT_DisableTrigUser": "disables the user triggers on",
}


def check(stmt, ctx):
    node = stmt.node
    if stmt.kind == "CreateTrigStmt":
        function = ".".join(strings(node.get("funcname")))
        yield (f"creates trigger {node.get('trigname')} on {table_of(node['relation'])}, running {function}() "
               "on every matching write: its body is not checked")
    elif stmt.kind in ("CreateEventTrigStmt", "AlterEventTrigStmt"):
        yield "an event trigger runs a function on DDL commands of every session"
    elif "relation" in node:
        for _, cmd in alter_table_cmds(node):
            what = TABLE_CMDS.get(cmd.get("subtype"))
            if what:
                yield f"{what} {table_of(node['relation'])}: which functions run on writes changes"


RULE = Rule(
    code="trigger",
    severity=FORBIDDEN,
    summary="A trigger runs its function on writes (the migration's and the app's), and that function is not checked; "
            "enabling or disabling triggers changes what runs.",
    hint="Have the trigger and its function reviewed and approved; for dual writes during an expand/contract change, "
         "prefer writing both columns from the application.",
    check=check, on=("CreateTrigStmt", "CreateEventTrigStmt", "AlterEventTrigStmt", "AlterTableStmt"),
    bad=tuple(BAD), good=tuple(GOOD), cmds=tuple(TABLE_CMDS),
)
