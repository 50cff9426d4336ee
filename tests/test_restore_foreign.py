"""`restore --from-file` / `--from-url`: an archive dbops did not make (a colleague's `pg_dump -Fc`, a
Render export's directory dump in a .tar.gz) restored into a configured target, checked as far as
it can be, and marked as not from the catalog; a damaged or hostile file changes nothing."""
from __future__ import annotations

import http.server
import io
import json
import subprocess
import tarfile
import threading
from pathlib import Path

import psycopg
import pytest

from handlers.postgres import libpq_env, pg_tool
from tests.test_cli import dbops
from tests.test_migrations_e2e import ALICE, BOSS, react, request_message, request_status


def rows(dsn: str, table: str = "Notes") -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


def tables(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid ="
                                           " c.relnamespace WHERE n.nspname = 'public' AND relkind = 'r'")]


def pg_dump(dsn: str, out: Path, *args: str) -> Path:
    subprocess.run([pg_tool("pg_dump"), "-f", str(out), *args], env=libpq_env(dsn), check=True, capture_output=True)
    return out


@pytest.fixture
def colleagues_dump(demo_db, tmp_path):
    """A plain `pg_dump -Fc` made outside dbops."""
    return pg_dump(demo_db, tmp_path / "colleague.dump", "-Fc")


def restore(env: dict, *args: str):
    return dbops("restore", *args, "--into", "recovery", "--confirm", "recovery", "--format", "json", env=env)


@pytest.fixture
def env(demo_db, fresh_db, tmp_path):
    (tmp_path / "dbops.toml").write_text('[targets.recovery]\nurl_env = "RECOVERY_URL"\nrole = "restore-target"\n'
                                         '[[drill.smoke_queries]]\nname = "a note can be read"\n'
                                         'sql = \'SELECT 1 FROM "Notes" LIMIT 1\'\n')
    return {"DATABASE_URL": demo_db, "RECOVERY_URL": fresh_db, "DBOPS_CONFIG": str(tmp_path / "dbops.toml"),
            "DBOPS_BACKUP_DIR": str(tmp_path / "backups")}


def test_a_colleagues_dump_is_restored_checked_and_marked_as_not_from_the_catalog(env, colleagues_dump, demo_db,
                                                                                 fresh_db):
    done = restore(env, "--from-file", str(colleagues_dump))
    assert done.returncode == 0, done.stdout + done.stderr
    body = json.loads(done.stdout)
    assert body["outcome"] == "ok" and body["from_catalog"] is False
    assert "(not from the catalog)" in body["title"] and "not a dbops backup: it has no manifest" in body["summary"]
    checks = {c["name"]: c for c in body["checks"]}
    assert checks["archive: full read"]["ok"] and checks["archive: table of contents"]["ok"]
    assert checks["smoke: a note can be read"]["ok"] and any(n.endswith("tables restored") for n in checks)
    assert rows(fresh_db) == rows(demo_db) and body["rows"] > 100_000
    with psycopg.connect(demo_db) as conn:  # not catalogued: no backup of anything was recorded
        assert conn.execute("SELECT count(*) FROM dbops.backups").fetchone()[0] == 0


def test_a_render_export_tar_of_a_directory_dump_is_unpacked_safely_and_restored(env, demo_db, fresh_db, tmp_path):
    folder = pg_dump(demo_db, tmp_path / "export", "-Fd", "-j", "2")
    packed = tmp_path / "export.dir.tar.gz"
    with tarfile.open(packed, "w:gz") as tar:
        tar.add(folder, arcname="export")
    done = restore(env, "--from-file", str(packed))
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["checks"][0]["detail"].startswith("DIRECTORY format")
    assert rows(fresh_db) == rows(demo_db)


def test_a_truncated_archive_fails_before_the_target_is_touched(env, colleagues_dump, fresh_db, tmp_path):
    cut = tmp_path / "cut.dump"
    cut.write_bytes(colleagues_dump.read_bytes()[: colleagues_dump.stat().st_size // 2])
    done = restore(env, "--from-file", str(cut))
    body = json.loads(done.stdout)
    assert done.returncode == 1 and body["outcome"] == "failed"
    assert "full read" in body["summary"] or "pg_restore can read" in body["summary"]
    ran = [s["step"] for s in body["steps"] if s["outcome"] != "skipped"]
    assert ran[-1] == "read archive" and tables(fresh_db) == []  # the steps after it are recorded as skipped
    assert [s["step"] for s in body["steps"] if s["outcome"] == "skipped"] == ["restore", "verify"]


def test_a_tar_reaching_outside_its_folder_is_refused(env, fresh_db, tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        data = b"x" * 10
        member = tarfile.TarInfo("../../outside.txt")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    done = restore(env, "--from-file", str(evil))
    assert done.returncode == 1 and "would land outside its folder: refused" in json.loads(done.stdout)["summary"]
    assert not (tmp_path / "outside.txt").exists() and tables(fresh_db) == []


def test_a_target_holding_tables_is_refused_without_overwrite(env, colleagues_dump, demo_db):
    env = {**env, "RECOVERY_URL": demo_db}  # the target holds tables (it is production's copy here)
    done = restore(env, "--from-file", str(colleagues_dump))
    assert done.returncode == 2 and "is not empty" in json.loads(done.stdout)["error"]


class _Serve(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def served(colleagues_dump):
    """The dump behind a real HTTP server, at a URL with a signed-looking query."""
    handler = lambda *a, **kw: _Serve(*a, directory=str(colleagues_dump.parent), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{colleagues_dump.name}?X-Amz-Signature=s3cr3tsignature"
    server.shutdown()


def test_from_url_downloads_it_and_never_shows_the_query(env, served, demo_db, fresh_db):
    done = restore(env, "--from-url", served)
    assert done.returncode == 0, done.stdout + done.stderr
    assert rows(fresh_db) == rows(demo_db)
    assert "s3cr3tsignature" not in done.stdout + done.stderr and "(query hidden)" in done.stdout
    missing = restore(env, "--overwrite", "--from-url", served.replace("colleague", "nothing"))
    assert missing.returncode == 1 and "HTTP 404" in json.loads(missing.stdout)["summary"]
    assert rows(fresh_db) == rows(demo_db)  # fetched before anything is dropped: the target is as it was
    wrong = restore(env, "--from-url", "file:///etc/passwd")
    assert wrong.returncode == 2 and "http:// or https://" in json.loads(wrong.stdout)["error"]


def test_from_url_in_slack_is_a_request_that_runs_once_another_approver_reacts(bot_factory, fake_slack, served,
                                                                               demo_db, fresh_db, tmp_path):
    (tmp_path / "dbops.toml").write_text('[targets.recovery]\nurl_env = "RECOVERY_URL"\n')
    bot = bot_factory(demo_db, RECOVERY_URL=fresh_db, DBOPS_APPROVERS=f"{BOSS},{ALICE}")
    assert bot.command(f"restore --from-url {served} --into recovery", user=BOSS).status_code == 200
    posted = fake_slack.wait_for(lambda: request_message(fake_slack, "r001"), what="the restore request", timeout=60)
    hints = fake_slack.wait_for(lambda: len(fake_slack.calls_to("reactions.add")) == 2
                                and fake_slack.calls_to("reactions.add"), what="the hint reactions")
    assert "not from the catalog" in posted[0].raw and "s3cr3tsignature" not in posted[0].raw
    assert tables(fresh_db) == []
    react(bot, ALICE, hints[0].params["timestamp"])
    fake_slack.wait_for(lambda: request_status(demo_db, "r001") in ("applied", "failed"), what="the restore",
                        timeout=180)
    assert request_status(demo_db, "r001") == "applied"
    assert rows(fresh_db) == rows(demo_db)
    assert "s3cr3tsignature" not in " ".join(c.raw or "" for c in fake_slack.calls)
