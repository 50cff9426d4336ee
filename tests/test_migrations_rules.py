"""Every rule's own examples: each BAD example produces the rule's code, each GOOD one does not.
No database: examples declare what they need (old column types) in the same file."""
from __future__ import annotations

import pytest

from handlers.migrations import all_rules, check_migration
from handlers.migrations.model import Severity
from handlers.migrations.rules.type_table import Change, classify
from handlers.migrations.sqltypes import SqlType

RULES = all_rules()


def _cases(which: str):
    for rule in RULES:
        for n, example in enumerate(rule.examples(which)):
            yield pytest.param(rule, example, id=f"{rule.code}-{which}-{n}")


def test_registry_has_every_policy_code():
    codes = {r.code for r in RULES}
    assert {
        "drop-table", "drop-column", "lossy-type-change", "narrowing-type-change", "irreversible", "truncate",
        "delete-without-where", "update-without-where", "rename-column", "rename-table",
        "add-column-not-null-without-default", "set-not-null", "create-index-not-concurrently",
        "constraint-not-valid-missing", "unique-constraint-without-index", "table-rewrite",
        "lock-timeout-missing", "do-block", "call", "copy", "side-effect-function", "privilege-change",
        "role-change", "trigger", "extension", "create-function", "unknown-statement", "volatile-predicate",
        "drop-schema", "drop-owned", "drop-cascade", "drop-materialized-view",
    } <= codes


def test_every_statement_kind_a_rule_looks_at_is_on_the_allow_list():
    """A kind some rule judges must be in unknown-statement's allow-list, or it is reported twice
    (except the wrappers the row-changing rules look inside for a more specific message while the
    wrapper itself stays unknown); and what the opaque-code rules report must be forbidden."""
    from handlers.migrations.rules import rules_by_kind
    from handlers.migrations.rules.unknown_statement import UNDERSTOOD

    assert set(rules_by_kind()) - set(UNDERSTOOD) == {"PrepareStmt", "DeclareCursorStmt", "RuleStmt", "MergeStmt"}
    severities = {r.code: r.severity for r in RULES}
    for code in ("do-block", "call", "copy", "side-effect-function", "privilege-change", "role-change",
                 "trigger", "extension", "unknown-statement", "volatile-predicate", "drop-schema", "drop-owned",
                 "drop-cascade"):
        assert severities[code] is Severity.FORBIDDEN, code


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.code)
def test_every_rule_documents_itself(rule):
    assert rule.bad and rule.good, f"{rule.code} needs good and bad examples"
    assert rule.summary.strip() and rule.hint.strip()


@pytest.mark.parametrize("rule,example", list(_cases("bad")))
def test_bad_example_is_reported(rule, example):
    result = check_migration(example.up, example.down)
    found = [f for f in result.findings if f.code == rule.code]
    assert found, f"{rule.code} missed:\n{example.up}"
    for finding in found:
        assert finding.message and finding.hint
        if rule.severity is Severity.FORBIDDEN and finding.severity is Severity.FORBIDDEN:
            assert result.requires_approval


@pytest.mark.parametrize("rule,example", list(_cases("good")))
def test_good_example_is_not_reported(rule, example):
    result = check_migration(example.up, example.down)
    found = [f for f in result.findings if f.code == rule.code]
    assert not found, f"{rule.code} reported on a good example: {found}"


# The classification table in handlers/migrations/rules/type_table.py, row by row (ops plan).
V, N, TS = SqlType("varchar", (64,)), SqlType("numeric", (12, 2)), SqlType("timestamp", (6,))
TABLE_ROWS = [
    (V, SqlType("varchar", (256,)), Change.SAFE),
    (V, SqlType("text"), Change.SAFE),
    (SqlType("text"), SqlType("varchar"), Change.SAFE),
    (N, SqlType("numeric", (16, 2)), Change.SAFE),
    (N, SqlType("numeric"), Change.SAFE),
    (SqlType("timestamp", (3,)), TS, Change.SAFE),
    (SqlType("timestamptz", (0,)), SqlType("timestamptz"), Change.SAFE),
    (SqlType("cidr"), SqlType("inet"), Change.SAFE),
    (SqlType("interval", (0x7FFF, 3)), SqlType("interval"), Change.SAFE),
    (SqlType("interval", (0x7FFF, 3)), SqlType("interval", (0x7FFF, 6)), Change.SAFE),
    (SqlType("interval", (8, 0xFFFF)), SqlType("interval"), Change.SAFE),  # DAY to unrestricted
    (SqlType("int4"), SqlType("int8"), Change.REWRITE),
    (SqlType("int2"), SqlType("int4"), Change.REWRITE),
    (SqlType("float4"), SqlType("float8"), Change.REWRITE),
    (SqlType("date"), SqlType("timestamp"), Change.REWRITE),
    (SqlType("int4"), SqlType("numeric", (10, 0)), Change.REWRITE),
    (SqlType("numeric", (4, -3)), SqlType("int4"), Change.REWRITE),  # at most 9999000
    (SqlType("numeric", (4, -3)), SqlType("int2"), Change.NARROWING),
    (SqlType("int4"), SqlType("numeric", (3, -7)), Change.LOSSY),  # 12345678 becomes 10000000
    (SqlType("int2"), SqlType("numeric", (8, -1)), Change.LOSSY),
    (N, SqlType("numeric", (14, 4)), Change.REWRITE),
    (SqlType("jsonb"), SqlType("json"), Change.REWRITE),
    (SqlType("uuid"), SqlType("text"), Change.REWRITE),
    (V, SqlType("varchar", (32,)), Change.NARROWING),
    (SqlType("text"), SqlType("varchar", (32,)), Change.NARROWING),
    (SqlType("int8"), SqlType("int4"), Change.NARROWING),
    (N, SqlType("numeric", (10, 2)), Change.NARROWING),
    (N, SqlType("numeric", (12, 4)), Change.NARROWING),
    (SqlType("int8"), SqlType("numeric", (10, 0)), Change.NARROWING),
    (SqlType("numeric", (12, 0)), SqlType("int4"), Change.NARROWING),
    (N, SqlType("numeric", (12, 1)), Change.LOSSY),
    (SqlType("numeric"), N, Change.LOSSY),
    (N, SqlType("int8"), Change.LOSSY),
    (N, SqlType("float8"), Change.LOSSY),
    (SqlType("int8"), SqlType("float8"), Change.LOSSY),
    (SqlType("float8"), SqlType("float4"), Change.LOSSY),
    (TS, SqlType("timestamp", (3,)), Change.LOSSY),
    (SqlType("timestamptz"), SqlType("timestamptz", (0,)), Change.LOSSY),
    (TS, SqlType("date"), Change.LOSSY),
    (SqlType("timestamptz"), SqlType("timestamp"), Change.LOSSY),
    (SqlType("inet"), SqlType("cidr"), Change.LOSSY),
    (SqlType("interval"), SqlType("interval", (0x7FFF, 3)), Change.LOSSY),
    (SqlType("interval"), SqlType("interval", (4, 0xFFFF)), Change.LOSSY),  # INTERVAL YEAR
    (SqlType("json"), SqlType("jsonb"), Change.LOSSY),
    (SqlType("text"), SqlType("bpchar", (10,)), Change.LOSSY),
    (SqlType("text"), SqlType("uuid"), Change.LOSSY),
    (SqlType("int4", (), True), SqlType("int4"), Change.LOSSY),
    (None, SqlType("text"), Change.UNKNOWN),
    (V, V, Change.SAME),
]


@pytest.mark.parametrize("old,new,expected", TABLE_ROWS, ids=lambda v: str(v))
def test_type_change_classification(old, new, expected):
    result = classify(old, new, None, "c")
    assert result.change is expected, result.reason
    assert (result.misfit is not None) == (expected is Change.NARROWING)


def test_using_expressions_are_lossy_unless_a_plain_cast():
    def using(expr: str):
        return check_migration(f"CREATE TABLE t (c varchar(64));\nALTER TABLE t ALTER COLUMN c TYPE text USING {expr};")

    assert "lossy-type-change" not in [f.code for f in using("c").findings]
    assert "lossy-type-change" not in [f.code for f in using("c::text").findings]
    for expr in ("lower(c)", "c || ''", "c::varchar(10)::text", "other"):
        assert "lossy-type-change" in [f.code for f in using(expr).findings], expr
