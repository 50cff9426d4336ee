"""One verification plan for every copy (handlers/verification/plan.py): what each kind of drill and
restore checks is PLAN less what its Caller declares as data, so a check added to the plan reaches
every one of them unless a caller opts out, with a reason the report shows as "not run"."""
from __future__ import annotations

import ast
from pathlib import Path

import psycopg
import pytest

from handlers.drill import checks as C
from handlers.drill.settings import SmokeQuery
from handlers.report import Check, Section, Verdict
from handlers.verification import plan

ROOT = Path(__file__).resolve().parents[1]

# Per caller, the planned checks it makes, in order. Changing this table is the deliberate act: a caller
# that skips one says so in its Caller (made_earlier: as a gate before the restore; opts_out: with why).
RUNS = {
    "drill": ["table data", "schema", "validity", "expected indexes", "smoke queries", "amcheck"],
    "restore": ["copy major", "table data", "schema", "validity", "expected indexes", "smoke queries", "amcheck"],
    "restore from a file": ["copy major", "table data", "schema", "validity", "smoke queries", "amcheck"],
    "render drill": ["copy major", "table data", "schema", "validity", "expected indexes", "smoke queries",
                     "amcheck"],
    "render export drill": ["table data", "schema", "validity", "expected indexes", "smoke queries", "amcheck"],
    "point-in-time restore": ["copy major", "table data", "schema", "validity", "expected indexes", "smoke queries",
                              "amcheck"],
}

# Which module runs the plan as which caller: every kind of drill and restore is here.
CALLER_OF = {
    "handlers/drill/runner.py": "DRILL",
    "handlers/restore/runner.py": "RESTORE",
    "handlers/restore/foreign.py": "FOREIGN_RESTORE",
    "handlers/render/drill.py": "RENDER_PITR_DRILL",
    "handlers/render/export.py": "RENDER_EXPORT_DRILL",
    "handlers/render/pitr.py": "PITR_RESTORE",
}


def test_each_caller_runs_the_checks_listed_here():
    assert {c.name: plan.runs(c) for c in plan.CALLERS} == RUNS


def test_a_check_added_to_the_plan_reaches_every_caller_unless_it_opts_out_in_data(monkeypatch):
    new = plan.Planned("new check", lambda run: [], lambda run: "something new")
    monkeypatch.setattr(plan, "PLAN", [*plan.PLAN, new])
    for caller in plan.CALLERS:
        assert plan.runs(caller)[-1] == "new check", caller.name
    opted = plan.Caller("opted out", opts_out=(("new check", "not here, because"),))
    assert "new check" not in plan.runs(opted)


def test_smoke_queries_run_everywhere_and_every_difference_is_a_planned_name():
    """Decided on purpose: the application's own queries are proven on every copy, a restore into a real
    target above all. What a caller leaves out names a planned check (a typo would silently run it)."""
    names = {p.name for p in plan.PLAN}
    for caller in plan.CALLERS:
        assert "smoke queries" in plan.runs(caller), caller.name
        assert caller.made_earlier <= names and {n for n, _ in caller.opts_out} <= names
        assert all(why for _, why in caller.opts_out)


def test_every_drill_and_restore_runs_the_plan_as_its_caller():
    """No module verifies a copy by hand: each runs plan.verify as its own Caller."""
    for path, name in CALLER_OF.items():
        tree = ast.parse((ROOT / path).read_text())
        used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)} | \
               {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert name in used, path  # the foreign restore and the export drill inherit their verify step
        assert "amcheck_check" not in used and "smoke_query_check" not in used, path  # only the plan calls these
    assert {getattr(plan, n) for n in CALLER_OF.values()} == set(plan.CALLERS)


def test_the_drill_makes_the_copy_major_check_earlier_as_a_gate():
    drill = (ROOT / "handlers/drill/runner.py").read_text()
    assert "copy_major_check" in drill.split("def _create_instance", 1)[1].split("def ", 1)[0]


# -- the verdicts and how they show -------------------------------------------------------------
def test_one_check_type_shown_the_same_everywhere():
    checks = [Check("a", Verdict.OK), Check("b", Verdict.WARNING), Check("c", Verdict.FAILED),
              Check("d", Verdict.NOT_RUN, "not run: why")]
    assert Section("Checks", checks=checks).table.rows == [["a", "ok", ""], ["b", "warning", ""],
                                                           ["c", "FAILED", ""], ["d", "not run", "not run: why"]]
    assert [c.ok for c in checks] == [True, True, False, True]  # a check not run did not fail
    assert [Check.from_dict(c.to_dict()) for c in checks] == checks
    # A check stored before verdicts were (ok, warning) reads back as it was meant.
    assert Check.from_dict({"name": "x", "ok": True, "warning": True}).verdict is Verdict.WARNING


# -- on a real copy ------------------------------------------------------------------------------
@pytest.fixture
def copy_dsn(fresh_db):
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (id int PRIMARY KEY, title text NOT NULL)")
        conn.execute("INSERT INTO notes SELECT g, 'n' || g FROM generate_series(1, 50) g")
    return fresh_db


SMOKE = (SmokeQuery("a note can be read", "SELECT title FROM notes WHERE id = 7", "n7"),)


def _verify(dsn, reference, caller, **options):
    opts = plan.Options(jobs=1, amcheck=False, smoke_queries=SMOKE, **options)
    return plan.verify(dsn, reference, caller, opts)


def test_a_restore_into_a_real_target_proves_the_smoke_queries(copy_dsn):
    with psycopg.connect(copy_dsn, autocommit=True) as conn:
        manifest = C.capture_restored(conn, "counts") | {"target": "prod", "integrity_level": "counts"}
    done = _verify(copy_dsn, plan.AgainstManifest(manifest), plan.RESTORE)
    by_name = {c.name: c for c in done.checks}
    assert by_name["smoke: a note can be read"].verdict is Verdict.OK
    assert by_name["pg_amcheck: heap and B-tree indexes"].verdict is Verdict.NOT_RUN  # [drill] amcheck = false
    assert "not run" in by_name["pg_amcheck: heap and B-tree indexes"].detail
    assert "1 smoke query" in done.did and not [c for c in done.checks if c.verdict is Verdict.FAILED]

    with psycopg.connect(copy_dsn, autocommit=True) as conn:
        conn.execute("UPDATE notes SET title = 'changed' WHERE id = 7")
    done = _verify(copy_dsn, plan.AgainstManifest(manifest), plan.RESTORE)
    smoke = next(c for c in done.checks if c.name == "smoke: a note can be read")
    assert smoke.verdict is Verdict.FAILED and smoke.headline == "a smoke query found other rows"


def test_what_a_caller_or_a_reference_cannot_check_is_reported_not_run_with_why(copy_dsn):
    lines = ["TABLE DATA public notes app", "TABLE DATA public gone app"]
    done = _verify(copy_dsn, plan.AgainstArchive(lines, "export.dump", "16.4"), plan.FOREIGN_RESTORE,
                   expected_indexes=())
    by_name = {c.name: c for c in done.checks}
    skipped = by_name["expected indexes"]
    assert skipped.verdict is Verdict.NOT_RUN and "no manifest" in skipped.detail
    assert by_name["schema"].verdict is Verdict.NOT_RUN and "no manifest" in by_name["schema"].detail
    tables = by_name["the archive's 2 tables restored"]
    assert tables.verdict is Verdict.FAILED and "public gone" in tables.detail
    assert by_name["smoke: a note can be read"].verdict is Verdict.OK

    done = _verify(copy_dsn, plan.NoReference("no backup before that moment", "prod"), plan.PITR_RESTORE)
    by_name = {c.name: c for c in done.checks}
    assert by_name["table data"].verdict is Verdict.NOT_RUN and by_name["schema"].verdict is Verdict.NOT_RUN
    assert "no backup before that moment" in by_name["table data"].detail
    assert by_name["smoke: a note can be read"].verdict is Verdict.OK
