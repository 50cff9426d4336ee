"""exclusion-constraint: ADD CONSTRAINT ... EXCLUDE builds its index under an ACCESS EXCLUSIVE lock."""
from ..nodes import added_constraints, quote_ident
from ..rule import WARNING, Rule

BAD = [
    'ALTER TABLE "Bookings" ADD CONSTRAINT "EX_Bookings_Room_During" EXCLUDE USING gist ("RoomId" WITH =, '
    '"During" WITH &&);',
    'ALTER TABLE "Users" ADD EXCLUDE ("DisplayName" WITH =);',
]
GOOD = [
    'CREATE TABLE bookings (room int, during tstzrange, EXCLUDE USING gist (room WITH =, during WITH &&));',
    'CREATE TABLE t (room int, during tstzrange);\n'
    'ALTER TABLE t ADD CONSTRAINT t_no_overlap EXCLUDE USING gist (room WITH =, during WITH &&);',
    'ALTER TABLE "Bookings" DROP CONSTRAINT "EX_Bookings_Room_During";',
]


def check(stmt, ctx):
    for table, constraint in added_constraints(stmt, ctx):
        if constraint.get("contype") == "CONSTR_EXCLUSION":
            name = quote_ident(constraint["conname"]) if constraint.get("conname") else "an exclusion constraint"
            yield (f"adds {name} on {table}: its index is built, checking every row, under an ACCESS EXCLUSIVE "
                   "lock (reads and writes wait); exclusion constraints have no NOT VALID or concurrent form")


RULE = Rule(
    code="exclusion-constraint",
    severity=WARNING,
    summary="Adding an EXCLUDE constraint to an existing table blocks reads and writes while its index is built.",
    hint="There is no online way: add it while the table is small, in a maintenance window with lock_timeout set, "
         "or build a new table with the constraint, copy the rows over in batches and switch to it.",
    check=check, on=("AlterTableStmt",), bad=tuple(BAD), good=tuple(GOOD),
    cmds=("AT_AddConstraint",),
)
