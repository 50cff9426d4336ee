"""DML the copy cannot judge: a DELETE or UPDATE selecting rows by a key or timestamp range that reaches
past what the backup holds is forbidden, rows are compared by key and content after DOWN (not only
counted), and the rows each statement touches in production are estimated there with EXPLAIN."""
from __future__ import annotations

import json
from datetime import timedelta

import psycopg
import pytest

from handlers.migrations import check_migration
from handlers.migrations.parsing import parse_statements
from handlers.migrations.rehearsal import RehearsalSettings
from handlers.migrations.rehearsal.reach import reaches_above, targets
from tests.test_migrations_e2e import dbops, prod, request_message, submit_form  # noqa: F401 (prod: a fixture)
from tests.test_migrations_rehearsal import demo_archive, run  # noqa: F401 (demo_archive: a fixture)


@pytest.fixture(scope="module")
def largest(pg_server, demo_template) -> tuple[int, str]:
    """The copy's largest note id, and a time just after its newest note."""
    with psycopg.connect(pg_server.dsn(demo_template)) as conn:
        top, newest = conn.execute('SELECT max("Id"), max("CreatedAt") FROM "Notes"').fetchone()
    return top, (newest + timedelta(seconds=1)).isoformat()


def codes(result) -> list[str]:
    return [f.code for f in result.findings()]


def test_ranges_past_the_copy_are_forbidden(demo_archive, tmp_path, largest):
    top, after = largest
    settings = RehearsalSettings(work_dir=tmp_path / "work")
    up = (f'DELETE FROM "Notes" WHERE "Id" > {top};\n'
          f'DELETE FROM "Notes" WHERE "CreatedAt" > \'{after}\';\n'
          f'UPDATE "Notes" n SET "IsPinned" = true WHERE n."Id" BETWEEN {top - 5} AND {top + 100};\n'
          f'DELETE FROM "Notes" WHERE "Id" IN (3, {top + 1}) AND "IsPinned";\n'
          f'WITH d AS (DELETE FROM "Notes" WHERE "CreatedAt" >= \'{after}\'::timestamptz RETURNING 1) SELECT 1;\n')
    result = run(up, None, demo_archive, settings)
    assert result.up_error is None
    assert [(b["line"], b["column"]) for b in result.beyond_copy] == [
        (1, "Id"), (2, "CreatedAt"), (3, "Id"), (4, "Id"), (5, "CreatedAt")]
    found = [f for f in result.findings() if f.code == "beyond-the-copy"]
    assert len(found) == 5 and all(f.severity.value == "forbidden" for f in found)
    assert 'DELETE selects rows of "Notes" by a range of "Id" reaching past the largest value a copy of backup b042' \
           in found[0].message
    assert not any(str(top) in f.message or after[:10] in f.message for f in found)  # the copy's values stay there


def test_ranges_within_the_copy_are_not(demo_archive, tmp_path, largest):
    top, _ = largest
    up = ('DELETE FROM "Notes" WHERE "Id" BETWEEN 1 AND 10;\n'
          'UPDATE "Notes" SET "IsPinned" = false WHERE "Id" = 7 OR ("Id" < 20 AND "IsPinned");\n'
          'DELETE FROM "Notes" WHERE "CreatedAt" < \'2020-01-01\' AND "IsPinned";\n'
          'DELETE FROM "Notes" WHERE "UserId" = 3 AND "Title" > \'m\';\n'
          f'DELETE FROM "Notes" WHERE "Id" > 50 AND "Id" <= {top};\n')
    result = run(up, None, demo_archive, RehearsalSettings(work_dir=tmp_path / "work"))
    assert result.up_error is None and result.beyond_copy == [] and "beyond-the-copy" not in codes(result)


def test_the_predicate_is_evaluated_above_the_copy():
    def reach(where: str, column: str = "Id") -> bool:
        (t,) = targets(parse_statements(f'DELETE FROM "Notes" n WHERE {where};'))
        return reaches_above(t.where, column, t.names, lambda v: int(v) > 100)

    assert reach('"Id" > 5') and reach('n."Id" <> 3') and reach('"Id" NOT IN (1, 2)') and reach('"Id" < 101')
    assert reach('"Id" = 3 OR "Id" >= 90') and reach('NOT ("Id" < 5)') and reach('"Id" BETWEEN SYMMETRIC 200 AND 1')
    assert not reach('"Id" < 100') and not reach('"Id" = 3 OR "Id" IN (4, 5)') and not reach('"Id" IS NULL OR "Id" < 7')
    assert not reach('"Id" > 5 AND "Id" <= 50') and not reach('50 >= "Id"') and not reach('"Id" BETWEEN 1 AND 99')


def test_rows_deleted_and_made_up_again_are_not_the_same_rows(demo_archive, tmp_path):
    up = 'DELETE FROM "Notes" WHERE "Id" <= 10;'
    down = ('INSERT INTO "Notes" ("Id", "UserId", "Title") SELECT g, 1, \'made up\' '
            'FROM generate_series(1, 10) g;')
    result = run(up, down, demo_archive, RehearsalSettings(work_dir=tmp_path / "work"))
    assert result.down_error is None, result.private_error_text()
    assert len(result.data_diff) == 1 and result.data_diff[0].startswith(
        "table public.Notes: as many rows after DOWN as before UP, but not the same rows"), result.data_diff
    assert codes(result) == ["irreversible"]


def test_rows_updated_and_set_back_differently_are_a_difference(demo_archive, tmp_path):
    up = 'UPDATE "Notes" SET "IsPinned" = NOT "IsPinned", "Content" = \'\' WHERE "Id" <= 10;'
    down = 'UPDATE "Notes" SET "IsPinned" = NOT "IsPinned" WHERE "Id" <= 10;'
    result = run(up, down, demo_archive, RehearsalSettings(work_dir=tmp_path / "work"))
    assert any("not the same rows" in d or '"Content"' in d for d in result.data_diff), result.data_diff
    assert codes(result) == ["irreversible"]


def test_the_target_estimates_the_rows_with_explain_and_runs_nothing(demo_db):
    up = ('DELETE FROM "Notes" WHERE "Id" <= 10;\nUPDATE "Users" SET "DisplayName" = lower("DisplayName");\n'
          'CREATE TABLE "Labels" (id int);\nDELETE FROM "Labels" WHERE id = 1;\n'
          "DELETE FROM \"Notes\" WHERE pg_terminate_backend(1);\n")
    with psycopg.connect(demo_db) as conn:
        conn.read_only = True
        result = check_migration(up, "SELECT 1;", conn=conn)
        before = conn.execute('SELECT count(*) FROM "Notes"').fetchone()[0]
    assert [(e["line"], e["kind"], e["relation"]) for e in result.estimates] == [
        (1, "DELETE", '"Notes"'), (2, "UPDATE", '"Users"'), (4, "DELETE", '"Labels"')]
    assert 1 <= result.estimates[0]["rows"] < 1000 and result.estimates[1]["rows"] > 1000
    assert result.estimates[2]["rows"] is None  # the table is not in the target yet
    section = [s for s in result.to_report().sections if s.title.startswith("Rows in the target")]
    assert section and section[0].table.rows[2] == [4, 'DELETE "Labels"', "not estimated"]
    with psycopg.connect(demo_db) as conn:
        assert conn.execute('SELECT count(*) FROM "Notes"').fetchone()[0] == before


def test_a_request_against_an_older_copy_is_forbidden_with_the_estimate_shown(bot_factory, fake_slack, prod,
                                                                              tmp_path):
    with psycopg.connect(prod) as conn:  # production moved on after the backup
        top = conn.execute('SELECT max("Id") FROM "Notes"').fetchone()[0]
        conn.execute('INSERT INTO "Notes" ("UserId", "Title") SELECT "UserId", \'new\' FROM "Notes" LIMIT 5')
    (tmp_path / "up.sql").write_text(f'DELETE FROM "Notes" WHERE "Id" > {top};\n')
    (tmp_path / "down.sql").write_text("SELECT 1;\n")
    done = dbops("migrate", "request", "up.sql", "--down", "down.sql", "--name", "newer-notes", "--format", "json",
                 dsn=prod, cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    body = json.loads(done.stdout)
    assert "beyond-the-copy" in {f["code"] for f in body["findings"]}
    assert [e["relation"] for e in body["estimates"]] == ['"Notes"'] and body["estimates"][0]["rows"] >= 1

    bot = bot_factory(prod)
    submit_form(bot, "U0ALICE", f'DELETE FROM "Notes" WHERE "Id" > {top};', "SELECT 1;", "newer-notes-2")
    posted = fake_slack.wait_for(lambda: request_message(fake_slack, "r002"), what="the request", timeout=180)
    message = json.dumps(posted[0].params)
    assert "beyond-the-copy" in message and "Rows in the target" in message
    with psycopg.connect(prod) as conn:
        assert conn.execute('SELECT count(*) FROM "Notes" WHERE "Title" = \'new\'').fetchone()[0] == 5
