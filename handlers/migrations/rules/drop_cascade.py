"""drop-cascade: DROP ... CASCADE also drops whatever depends on the object, columns included."""
from ..rule import FORBIDDEN, Rule

BAD = [
    "DROP TYPE note_color CASCADE;",
    'DROP DOMAIN "Email" CASCADE;',
    "DROP EXTENSION citext CASCADE;",
    "DROP FUNCTION notes_words(text) CASCADE;",
    'DROP INDEX "IX_Users_Email" CASCADE;',
]
GOOD = [
    "DROP TYPE note_color;",
    'DROP INDEX CONCURRENTLY "IX_Notes_Title";',
    'DROP FUNCTION IF EXISTS notes_words(text);',
]


def check(stmt, ctx):
    if stmt.node.get("behavior") == "DROP_CASCADE":
        what = stmt.node.get("removeType", "OBJECT_").removeprefix("OBJECT_").replace("_", " ").lower()
        yield (f"drops a {what} with CASCADE: every object that depends on it goes too, including table columns "
               "of a dropped type, domain or extension, generated columns using a dropped function, and views")


RULE = Rule(
    code="drop-cascade",
    severity=FORBIDDEN,
    summary="CASCADE drops dependent objects without naming them: columns (and their data) that use a dropped "
            "type, domain, extension or function, views, and constraints.",
    hint="Drop without CASCADE: PostgreSQL then lists what depends on the object. Drop or change those "
         "explicitly first, each one checked on its own.",
    check=check, on=("DropStmt",), bad=tuple(BAD), good=tuple(GOOD),
)
