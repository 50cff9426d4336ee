"""alter-domain-add-constraint: a new domain constraint is checked against every column using the domain."""
from ..nodes import quote_ident, strings
from ..rule import WARNING, Rule

BAD = [
    'ALTER DOMAIN "PositiveAmount" ADD CONSTRAINT "PositiveAmount_Check" CHECK (VALUE > 0);',
    'ALTER DOMAIN "Email" SET NOT NULL;',
]
GOOD = [
    'ALTER DOMAIN "PositiveAmount" ADD CONSTRAINT "PositiveAmount_Check" CHECK (VALUE > 0) NOT VALID;',
    'ALTER DOMAIN "PositiveAmount" DROP CONSTRAINT "PositiveAmount_Check";',
    'CREATE DOMAIN amount AS numeric(12,2);\nALTER DOMAIN amount ADD CONSTRAINT amount_positive CHECK (VALUE > 0);',
]


def check(stmt, ctx):
    node = stmt.node
    names = strings(node.get("typeName"))
    if not names or ".".join(names) in _created_domains(ctx, stmt):
        return
    domain = ".".join(quote_ident(n) for n in names)
    if node.get("subtype") == "C" and not node.get("def", {}).get("Constraint", {}).get("skip_validation"):
        yield (f"adds a constraint to domain {domain}: every row of every table with a column of that domain is "
               "checked, under a SHARE lock on each (writes wait)")
    elif node.get("subtype") == "O":
        yield (f"sets domain {domain} NOT NULL: every row of every table with a column of that domain is checked, "
               "under a SHARE lock on each (writes wait)")


def _created_domains(ctx, stmt) -> set[str]:
    """Domains an earlier statement of this file created: no column uses them yet but this file's own."""
    return {".".join(strings(s.node.get("domainname"))) for s in ctx.statements[:stmt.index]
            if s.kind == "CreateDomainStmt"}


RULE = Rule(
    code="alter-domain-add-constraint",
    severity=WARNING,
    summary="A constraint added to a domain is checked against every stored value of the domain, blocking writes "
            "to every table that uses it.",
    hint="Put the constraint on the columns instead (ADD CONSTRAINT ... CHECK ... NOT VALID, then VALIDATE in a "
         "later migration); or add the domain constraint NOT VALID, which checks only new values.",
    check=check, on=("AlterDomainStmt",), bad=tuple(BAD), good=tuple(GOOD),
)
