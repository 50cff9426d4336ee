"""irreversible: a migration without a DOWN migration cannot be rolled back."""
from ..rule import FORBIDDEN, Example, Hit, Rule

BAD = [
    Example('ALTER TABLE "Notes" ADD COLUMN "Color" text;', down=None),
    Example('ALTER TABLE "Notes" ADD COLUMN "Color" text;', down="-- nothing to undo?\n"),
]
GOOD = [
    Example('ALTER TABLE "Notes" ADD COLUMN "Color" text;', down='ALTER TABLE "Notes" DROP COLUMN "Color";'),
]


def check(ctx):
    if ctx.down is None:
        yield None, f"{ctx.filename} has no DOWN migration: it cannot be reversed"
    elif not ctx.down:
        yield None, Hit(f"the DOWN migration {ctx.down_filename} has no statements: it cannot reverse {ctx.filename}")


RULE = Rule(
    code="irreversible",
    severity=FORBIDDEN,
    summary="Every migration needs a DOWN migration that restores the previous schema.",
    hint="Write DOWN.sql undoing each statement in reverse order and pass it with --down; "
         "the rehearsal checks that it restores the schema.",
    check=check, on=(), bad=tuple(BAD), good=tuple(GOOD),
)
