"""A drill compares the restored copy with the source (the backup's manifest): what the source lacks,
or what pg_dump does not copy on purpose, is a warning that points at the index review, never a failed
restore; what the source had and the copy lost still fails. Real pg_dump archives, real restores."""
from __future__ import annotations

import psycopg
import pytest

from handlers.drill import run_drill
from handlers.drill.checks import Check, expected_indexes_check
from handlers.drill.result import DrillResult
from handlers.report import Outcome
from tests.drill_support import check, make_backup, pagila_backup, pagila_db, pagila_template, settings, work  # noqa: F401 -- fixtures


def run_sql(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def as_old_manifest(manifest: dict) -> dict:
    """The manifest as a dbops from before the index details (valid, unique, columns) wrote it."""
    indexes = [{k: i[k] for k in ("table", "name", "definition")} for i in manifest["schema"]["indexes"]]
    return {**manifest, "schema": {**manifest["schema"], "indexes": indexes}}


# -- expected indexes ------------------------------------------------------------------------------

def test_expected_index_missing_in_the_source_as_well_is_a_warning_not_a_failure(pagila_backup, work):
    manifest, archive = pagila_backup
    result = run_drill(manifest, archive, settings(work),
                       expected_indexes=[("film", ("title",), False), ("rental", ("customer_id",), False),
                                         ("actor", ("last_name",), True)])
    assert result.passed, result.to_markdown()
    found = check(result, "expected indexes (3)")
    assert found.ok and found.warning
    # actor (last_name) has a plain index in pagila: a plain index is not the unique one expected
    assert "missing in the source as well: index on rental (customer_id); unique index on actor (last_name)" \
        in found.detail
    assert "film (title)" not in found.detail
    assert "the index review (`indexes`)" in found.detail and "Not a restore problem" in found.detail
    assert result.warnings == [found]
    assert result.summary.startswith("Drill passed")
    # The headline counts what is wrong; the name of the check never claims a result.
    assert "1 warning about the source: 2 of 3 expected indexes missing in the source too." in result.summary
    assert result.to_report().outcome is Outcome.OK
    markdown = result.to_markdown()
    assert markdown.startswith("# Restore drill: PASSED with warnings")
    assert "| expected indexes (3) | warning |" in markdown


def test_old_manifest_without_index_details_tells_missing_in_source_from_every_index_coming_back(
        pagila_backup, work):
    manifest, archive = pagila_backup
    result = run_drill(as_old_manifest(manifest), archive, settings(work),
                       expected_indexes=[("film", ("title",), False), ("rental", ("customer_id",), False)])
    assert result.passed, result.to_markdown()
    found = check(result, "expected indexes (2)")
    assert found.warning and "missing in the source as well: index on rental (customer_id)" in found.detail


def test_old_manifest_with_an_index_the_restore_lost_still_fails(pagila_db, tmp_path, work):
    manifest, archive = make_backup(pagila_db, tmp_path / "lost.dump", after_manifest="DROP INDEX idx_title")
    result = run_drill(as_old_manifest(manifest), archive, settings(work),
                       expected_indexes=[("film", ("title",), False), ("rental", ("customer_id",), False)])
    assert not result.passed
    found = check(result, "expected indexes (2)")
    # Something the source had did not come back, so a missing expected index may be that: it fails.
    assert not found.ok and "missing after restore: index on film (title); index on rental" in found.detail


def test_expected_index_check_without_the_source_fails_every_missing_index(pagila_db):
    with psycopg.connect(pagila_db) as conn:
        verdict = expected_indexes_check(conn, [("rental", ("customer_id",), False)])
    assert verdict == Check.of("expected indexes (1)", False, "missing after restore: index on rental (customer_id)",
                               headline="1 of 1 expected indexes lost in the restore")


# -- invalid indexes in the source -------------------------------------------------------------------

def make_invalid_index(dsn: str) -> None:
    """What a failed CREATE UNIQUE INDEX CONCURRENTLY leaves: an invalid index (pagila's last names repeat)."""
    with pytest.raises(psycopg.errors.UniqueViolation):
        run_sql(dsn, "CREATE UNIQUE INDEX CONCURRENTLY actor_last_name_key ON actor (last_name)")
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'actor_last_name_key'::regclass"
                            ).fetchone() == (False,)


def test_invalid_index_in_the_source_is_a_warning_pointing_at_db_indexes(pagila_db, tmp_path, work):
    make_invalid_index(pagila_db)
    manifest, archive = make_backup(pagila_db, tmp_path / "invalid-index.dump")
    recorded = [i for i in manifest["schema"]["indexes"] if i["name"] == "actor_last_name_key"]
    assert recorded and recorded[0]["valid"] is False
    result = run_drill(manifest, archive, settings(work), expected_indexes=[("actor", ("last_name",), True)])
    assert result.passed, result.to_markdown()
    invalid = check(result, "invalid indexes in the source (1)")
    assert invalid.ok and invalid.warning
    assert "actor_last_name_key on public.actor" in invalid.detail
    assert "the index review (`indexes`)" in invalid.detail
    expected = check(result, "expected indexes (1)")
    assert expected.warning and "actor_last_name_key is invalid there" in expected.detail
    assert all(c.ok for c in result.checks if c.name.startswith("schema:"))
    assert check(result, "index validity").ok  # the copy itself has no invalid index


def test_invalid_index_from_an_old_manifest_without_validity_still_fails(pagila_db, tmp_path, work):
    make_invalid_index(pagila_db)
    manifest, archive = make_backup(pagila_db, tmp_path / "invalid-index.dump")
    result = run_drill(as_old_manifest(manifest), archive, settings(work))
    assert not result.passed  # the manifest cannot say the index was invalid: today's verdict, no crash
    indexes = next(c for c in result.checks if c.name.startswith("schema:") and c.name.endswith(" indexes"))
    assert "actor_last_name_key on public.actor: missing from the restored database" in indexes.detail


# -- NOT VALID constraints ---------------------------------------------------------------------------

def test_constraint_not_valid_on_purpose_in_the_source_is_a_warning(pagila_db, tmp_path, work):
    run_sql(pagila_db,
            # old rows break it: left NOT VALID on purpose, new rows must keep it
            "ALTER TABLE film ADD CONSTRAINT film_title_short CHECK (length(title) < 12) NOT VALID",
            # every row keeps this one: the drill can validate it on the copy
            "ALTER TABLE film ADD CONSTRAINT film_title_set CHECK (title <> '') NOT VALID")
    manifest, archive = make_backup(pagila_db, tmp_path / "not-valid.dump")
    assert {(c["name"], c["validated"]) for c in manifest["schema"]["constraints"]} >= \
        {("film_title_short", False), ("film_title_set", False)}
    result = run_drill(manifest, archive, settings(work))
    assert result.passed, result.to_markdown()
    constraints = check(result, "constraints (VALIDATE on the copy)")
    assert constraints.ok and constraints.warning
    assert "film_title_short on public.film" in constraints.detail
    assert "film_title_set" not in constraints.detail  # it holds: validated on the copy, nothing to say
    assert "1 NOT VALID in the backup, validated on the copy" in constraints.detail
    assert all(c.ok for c in result.checks if c.name.startswith("schema:"))


def test_constraint_valid_in_the_source_but_not_valid_after_restore_fails(pagila_db, tmp_path, work):
    run_sql(pagila_db, "ALTER TABLE film ADD CONSTRAINT film_title_short CHECK (length(title) < 100)")
    # The manifest records it valid; the archive gets a NOT VALID one that rows break.
    manifest, archive = make_backup(pagila_db, tmp_path / "broken.dump", after_manifest="""
        ALTER TABLE film DROP CONSTRAINT film_title_short;
        UPDATE film SET title = repeat('x', 120) WHERE film_id = 1;
        ALTER TABLE film ADD CONSTRAINT film_title_short CHECK (length(title) < 100) NOT VALID""")
    result = run_drill(manifest, archive, settings(work))
    assert not result.passed
    constraints = check(result, "constraints (VALIDATE on the copy)")
    assert not constraints.ok and "film_title_short on public.film" in constraints.detail
    schema = next(c for c in result.checks if c.name.startswith("schema:") and c.name.endswith("constraints"))
    assert not schema.ok and "film_title_short" in schema.detail and "validated" in schema.detail


def test_constraint_lost_in_the_restore_fails(pagila_db, tmp_path, work):
    run_sql(pagila_db, "ALTER TABLE film ADD CONSTRAINT film_title_short CHECK (length(title) < 100) NOT VALID")
    manifest, archive = make_backup(pagila_db, tmp_path / "lost.dump",
                                    after_manifest="ALTER TABLE film DROP CONSTRAINT film_title_short")
    result = run_drill(manifest, archive, settings(work))
    assert not result.passed  # NOT VALID in the source is no licence to lose it
    schema = next(c for c in result.checks if c.name.startswith("schema:") and c.name.endswith("constraints"))
    assert "constraint film_title_short on public.film: missing from the restored database" in schema.detail


# -- the verdict -------------------------------------------------------------------------------------

def test_a_drill_whose_steps_did_not_all_run_never_passes():
    steps = [{"step": s, "started_at": 0.0, "seconds": 1.0, "outcome": "ok", "detail": ""}
             for s in ("create instance", "restore", "delete instance")]  # verify never ran
    result = DrillResult(backup_id="b1", target="prod", instance_kind="local", started_at=0.0, finished_at=3.0,
                         steps=steps, checks=[Check.of("pg_restore errors", True)])
    assert not result.passed and "passed" not in result.summary
    running = DrillResult.from_dict({**result.to_dict(), "steps": steps[:2] + [
        {"step": "verify", "started_at": 0.0, "seconds": 0.0, "outcome": "running", "detail": ""}] + steps[2:]})
    assert not running.passed
