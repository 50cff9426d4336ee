"""truncate: TRUNCATE deletes every row of a table at once."""
from ..nodes import table_of
from ..rule import FORBIDDEN, WARNING, Hit, Rule

BAD = [
    'TRUNCATE "AuditLogs";',
    'TRUNCATE TABLE "RefreshTokens", "EmailVerificationTokens" RESTART IDENTITY CASCADE;',
]
GOOD = [
    'DELETE FROM "RefreshTokens" WHERE "ExpiresAt" < now() - interval \'30 days\';',
]


def check(stmt, ctx):
    for rel in stmt.node.get("relations", ()):
        table = table_of(rel["RangeVar"])
        if ctx.created_before(table, stmt):
            yield Hit(f"truncates {table}, which this file created: no existing data is lost", WARNING)
        else:
            cascade = (" and, with CASCADE, every table referencing it"
                       if stmt.node.get("behavior") == "DROP_CASCADE" else "")
            yield f"deletes every row of {table}{cascade}"


RULE = Rule(
    code="truncate",
    severity=FORBIDDEN,
    summary="TRUNCATE removes all rows; a DOWN migration cannot bring them back.",
    hint="Delete only the rows you mean to, with a WHERE clause and in batches; take a backup first "
         "(`/db backup`) if the data may be needed.",
    check=check, on=("TruncateStmt",), bad=tuple(BAD), good=tuple(GOOD),
)
