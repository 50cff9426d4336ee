"""Throwaway servers are sandboxes: hostile SQL in a rehearsal can neither run programs, read or
write files, become a superuser, nor see or post the bot's secrets; a killed process's rehearsal
server and work folder are removed at the next start; as root nobody's folder is opened up."""
from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from handlers.migrations.rehearsal import (
    APP_ROLE,
    Rehearsal,
    RehearsalSettings,
    rehearsal_work_dir,
    rehearse,
    remove_leftover_rehearsals,
)
from handlers.postgres import InstanceError, TemporaryInstance, asroot, libpq_env, pg_tool
from handlers.postgres import instance as pginstance

FAKE_SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-0000fake-bot-token-sandbox",
    "SLACK_SIGNING_SECRET": "fakesigningsecret0123456789abcdef",
    "DATABASE_URL": "postgresql://dbops:fake-db-password-77@prod.example:5432/asidenote",
    "DBOPS_BACKUP_KEY": base64.b64encode(b"fake backup key of 32 bytes!!!!!").decode(),
    "AWS_ACCESS_KEY_ID": "AKIAFAKESANDBOX0000",
    "AWS_SECRET_ACCESS_KEY": "fake/secret+access/key/sandbox/0000000",
}


@pytest.fixture
def bot_secrets(monkeypatch):
    for key, value in FAKE_SECRETS.items():
        monkeypatch.setenv(key, value)
    return FAKE_SECRETS


def secret_forms(secrets: dict[str, str]) -> list[str]:
    """Each secret as itself and base64-encoded, alone and as `env` prints it (at all 3 alignments)."""
    forms = []
    for key, value in secrets.items():
        forms.append(value)
        for text in (value, f"{key}={value}"):
            for pad in range(3):
                encoded = base64.b64encode(b"x" * pad + text.encode()).decode()
                forms.append(encoded[4:-4] if len(encoded) > 12 else encoded)
    return forms


def postmaster_pid(instance: TemporaryInstance) -> int:
    return int((instance.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])


# -- the server process --------------------------------------------------------------------------

def test_server_environment_holds_no_secret_of_the_bot(bot_secrets, tmp_path):
    with TemporaryInstance(purpose="sandbox-env", parent=tmp_path) as inst:
        environ = Path(f"/proc/{postmaster_pid(inst)}/environ").read_bytes().decode(errors="replace")
        names = {item.split("=", 1)[0] for item in environ.split("\0") if item}
        assert names <= {"PATH", "LANG", "LC_ALL", "PGDATA", "PG_GRANDPARENT_PID", "PGLOCALEDIR", "PGSYSCONFDIR",
                         "LC_COLLATE", "LC_CTYPE", "LC_MESSAGES", "LC_MONETARY", "LC_NUMERIC", "LC_TIME",
                         "PG_OOM_ADJUST_FILE", "PG_OOM_ADJUST_VALUE", "PWD", "SHLVL", "_"}, names
        # What a program started by the server sees (as the superuser, which the requester never is).
        with psycopg.connect(inst.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE env (line text)")
            conn.execute("COPY env FROM PROGRAM 'env'")
            seen = "\n".join(r[0] for r in conn.execute("SELECT line FROM env").fetchall())
        for value in bot_secrets.values():
            assert value not in environ and value not in seen
        assert "SLACK" not in seen and "DATABASE_URL" not in seen


def test_socket_folder_is_private_and_a_password_is_required(tmp_path):
    with TemporaryInstance(purpose="sandbox-auth", parent=tmp_path) as inst:
        st = inst.socket_dir.stat()
        assert stat.S_IMODE(st.st_mode) == 0o700
        expected_owner = asroot._service_account()[0] if os.geteuid() == 0 else os.geteuid()
        assert st.st_uid == expected_owner
        host = inst.socket_dir
        for dsn in (f"host={host} dbname=postgres user=postgres",
                    f"host={host} dbname=postgres user=postgres password=wrong-password"):
            with pytest.raises(psycopg.OperationalError, match="password"):
                psycopg.connect(dsn, connect_timeout=5).close()
        with psycopg.connect(inst.dsn()) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == "postgres"
        assert not list(inst.server_dir.glob("pwfile*"))  # initdb's password file is gone


def test_an_instance_error_does_not_show_the_password(tmp_path):
    inst = TemporaryInstance(purpose="sandbox-err", parent=tmp_path, settings={"shared_buffers": "not-a-size"})
    with pytest.raises(InstanceError) as info:
        inst.start()
    assert "pg_ctl failed" in str(info.value)
    assert inst._password and inst._password not in str(info.value)
    assert not list(tmp_path.glob("dbops-*"))


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_as_root_no_folder_is_opened_up(tmp_path, monkeypatch):
    # The binaries below a private folder, as in a clone under a 0700 home: linked, not copied.
    original = asroot.bin_dir().parent
    private = tmp_path / "private"
    site = private / "clone" / "site-packages"
    shutil.copytree(original, site / original.parent.name / original.name, symlinks=True, copy_function=os.link)
    shutil.copytree(original.parent.parent / f"{original.parent.name}.libs",
                    site / f"{original.parent.name}.libs", symlinks=True, copy_function=os.link)
    binaries = site / original.parent.name / original.name / "bin"
    monkeypatch.setenv("DBOPS_PG_BIN", str(binaries))
    work = private / "deeper" / "work"
    work.mkdir(parents=True)
    private.chmod(0o700)
    watched = [*work.parents, work, *binaries.parents, binaries]
    before = {p: p.stat().st_mode for p in watched}
    copy = asroot._root_base() / f"pg-{asroot._install_fingerprint(binaries.parent)}"
    try:
        with TemporaryInstance(purpose="sandbox-root", parent=work) as inst:
            with psycopg.connect(inst.dsn()) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            # The private folder stays closed to the service user, so the server lives elsewhere.
            assert not inst.server_dir.is_relative_to(private)
            assert Path(f"/proc/{postmaster_pid(inst)}").stat().st_uid == asroot._service_account()[0]
            assert copy.is_dir()
        assert {p: p.stat().st_mode for p in watched} == before
    finally:
        shutil.rmtree(copy, ignore_errors=True)


# -- hostile migrations in the rehearsal -----------------------------------------------------------

@pytest.fixture(scope="module")
def small_archive(pg_server, tmp_path_factory) -> Path:
    """A small production-like archive: an untrusted extension, an application schema, secret rows."""
    name = f"sandbox_src_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(pg_server.dsn(name), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")  # untrusted: needs a superuser to create
        conn.execute("CREATE SCHEMA app")
        conn.execute("CREATE TABLE app.users (id int PRIMARY KEY, email text NOT NULL)")
        conn.execute("INSERT INTO app.users SELECT i, 'user' || i || '@example.com' FROM generate_series(1, 50) i")
        conn.execute("CREATE TABLE public.notes (id int PRIMARY KEY, user_id int REFERENCES app.users, body text)")
    path = tmp_path_factory.mktemp("sandbox") / "small.dump"
    subprocess.run([pg_tool("pg_dump"), "-Fc", "-f", str(path)], env=libpq_env(pg_server.dsn(name)),
                   check=True, capture_output=True)
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}"')
    return path


def rehearse_on(archive: Path, up: str, tmp_path: Path, down: str | None = None) -> Rehearsal:
    settings = RehearsalSettings(work_dir=tmp_path / "work")
    result = rehearse(up, down, archive=archive, backup_id="b007", settings=settings)
    assert not list(settings.work_dir.glob("dbops-*"))
    assert result.restore_problems == []
    return result


def channel_text(result: Rehearsal) -> str:
    sections = "\n".join(f"{s.title}\n{s.text or ''}\n{json.dumps(s.table.rows if s.table else [], default=str)}"
                         for s in result.to_sections())
    findings = "\n".join(f"{f.message}\n{f.hint}" for f in result.findings())
    return "\n".join([json.dumps(result.to_dict(), default=str), sections, findings,
                      "\n".join(result.checklist_lines()), str(result.to_report())])


def test_the_copy_is_owned_by_an_ordinary_role(small_archive, tmp_path):
    up = textwrap.dedent(f"""\
        DO $$BEGIN
          IF current_user <> '{APP_ROLE}' OR session_user <> '{APP_ROLE}' THEN RAISE EXCEPTION 'wrong role'; END IF;
          IF (SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls
              FROM pg_roles WHERE rolname = current_user) THEN RAISE EXCEPTION 'privileged'; END IF;
          IF pg_has_role('pg_execute_server_program', 'MEMBER') OR pg_has_role('pg_read_server_files', 'MEMBER')
             OR pg_has_role('pg_write_server_files', 'MEMBER') THEN RAISE EXCEPTION 'file roles'; END IF;
          IF EXISTS (SELECT 1 FROM pg_tables WHERE schemaname IN ('public', 'app') AND tableowner <> current_user)
             THEN RAISE EXCEPTION 'a table not owned'; END IF;
          IF (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'app') <> current_user
             THEN RAISE EXCEPTION 'schema not owned'; END IF;
        END$$;
        ALTER TABLE app.users ADD COLUMN name text;
        """)
    result = rehearse_on(small_archive, up, tmp_path, down="ALTER TABLE app.users DROP COLUMN name;")
    assert result.up_error is None, result.private_error_text()
    assert result.reversible is True


def test_copy_from_program_fails_and_posts_no_secret(small_archive, tmp_path, bot_secrets):
    up = ("CREATE TABLE t(x text); COPY t FROM PROGRAM 'env | base64'; "
          "DO $$BEGIN RAISE EXCEPTION '%', (SELECT string_agg(x, '') FROM t); END$$;")
    result = rehearse_on(small_archive, up, tmp_path)
    assert (result.up_error_sqlstate, result.up_error_condition) == ("42501", "insufficient_privilege")
    assert result.up_error == "line 1: SQLSTATE 42501 (insufficient_privilege)"
    assert "FROM PROGRAM" in result.up_error_statement
    assert "permission denied" in result.private_error_text()
    assert len(result.up_error_text) <= 300
    everything = channel_text(result) + (result.private_error_text() or "")
    for form in secret_forms(bot_secrets):
        assert form not in everything
    assert any(line == "UP failed in rehearsal at line 1: SQLSTATE 42501 (insufficient_privilege)"
               for line in result.checklist_lines())
    assert [f.code for f in result.findings()] == ["rehearsal-failed"]


def test_a_program_started_by_copy_never_runs(small_archive, tmp_path):
    flag = Path(tempfile.gettempdir()) / f"dbops-sandbox-ran-{uuid.uuid4().hex}"
    up = f"CREATE TABLE t(x text);\nCOPY t FROM PROGRAM 'touch {flag}; echo ran';\n"
    result = rehearse_on(small_archive, up, tmp_path)
    assert (result.up_error_line, result.up_error_sqlstate) == (2, "42501")
    assert not flag.exists()


def test_rows_raised_in_an_error_reach_the_requester_only(small_archive, tmp_path):
    up = "DO $$BEGIN RAISE EXCEPTION '%', (SELECT string_agg(email, ',') FROM app.users); END$$;"
    result = rehearse_on(small_archive, up, tmp_path)
    assert result.up_error == "line 1: SQLSTATE P0001 (raise_exception)"
    assert "user1@example.com" in result.private_error_text()
    assert len(result.up_error_text) <= 300 and result.up_error_text.endswith("…")
    assert "@example.com" not in channel_text(result)
    assert Rehearsal.from_dict(result.to_dict()).up_error == result.up_error


@pytest.mark.parametrize("statement", [
    "COPY (SELECT 'x') TO '{file}'",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT pg_ls_dir('.')",
    "CREATE TABLE t(x text); COPY t FROM '/etc/passwd'",
    "ALTER ROLE current_user SUPERUSER",
    "SET ROLE postgres",
    "SET SESSION AUTHORIZATION postgres",
    "GRANT pg_execute_server_program TO current_user",
    "CREATE ROLE intruder SUPERUSER LOGIN",
    "ALTER SYSTEM SET archive_command = 'env > {file}'",
    "CREATE EXTENSION file_fdw",
    "CREATE EXTENSION dblink",
])
def test_escapes_from_the_sandbox_fail_with_a_permission_error(small_archive, tmp_path, statement):
    file = Path(tempfile.gettempdir()) / f"dbops-sandbox-{uuid.uuid4().hex}"
    result = rehearse_on(small_archive, statement.format(file=file) + ";", tmp_path)
    assert result.up_error is not None
    assert result.up_error_sqlstate == "42501", (result.up_error, result.private_error_text())
    assert result.up_error_condition == "insufficient_privilege"
    assert not file.exists()


# -- leftovers of a killed bot ---------------------------------------------------------------------

@pytest.fixture
def own_temp(tmp_path, monkeypatch) -> Path:
    """The system temp folder, for the leftover sweep, is this test's own."""
    folder = tmp_path / "systmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_a_killed_rehearsal_server_and_work_folder_are_removed_at_the_next_start(tmp_path, own_temp):
    work_dir = tmp_path / "work"
    script = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        sys.path.insert(0, {os.getcwd()!r})
        from handlers.migrations.rehearsal import REHEARSAL_PURPOSE, RehearsalSettings, rehearsal_work_dir
        from handlers.postgres import TemporaryInstance
        settings = RehearsalSettings(work_dir=Path({str(work_dir)!r}))
        holder = rehearsal_work_dir(settings)
        folder = holder.__enter__()
        (folder / "b042.dump").write_bytes(b"a copy of production")
        inst = TemporaryInstance(purpose=REHEARSAL_PURPOSE, parent=settings.work_dir).start()
        print(folder, inst.path, inst.server_dir, flush=True)
        os._exit(0)  # dies without cleaning up, like a killed bot
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    folder, instance_dir, server_dir = (Path(p) for p in out.split())
    pid = int((server_dir / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
    assert pginstance._running(pid)
    unmarked_old = tmp_path / "systmp" / "dbops-rehearsal-work-oldstyle"  # made by an older dbops
    unmarked_old.mkdir()
    (unmarked_old / "b041.dump").write_bytes(b"old copy")
    hours_ago = time.time() - 2 * 3600
    os.utime(unmarked_old / "b041.dump", (hours_ago, hours_ago))
    os.utime(unmarked_old, (hours_ago, hours_ago))
    unmarked_fresh = tmp_path / "systmp" / "dbops-rehearsal-work-inuse"
    unmarked_fresh.mkdir()

    with rehearsal_work_dir(RehearsalSettings(work_dir=work_dir)) as mine:  # alive: not touched
        said = remove_leftover_rehearsals(work_dir)
        assert mine.exists()
    assert sorted(said) == sorted([
        f"removed a leftover rehearsal server ({instance_dir.name}) from {work_dir}",
        f"removed a leftover rehearsal work folder ({folder.name}) from {work_dir}",
        f"removed a leftover rehearsal work folder (dbops-rehearsal-work-oldstyle) from {tmp_path / 'systmp'}",
    ])
    assert not folder.exists() and not instance_dir.exists() and not server_dir.exists()
    assert not unmarked_old.exists() and unmarked_fresh.exists()
    assert not pginstance._running(pid)
    assert remove_leftover_rehearsals(work_dir) == []


def test_a_forged_marker_does_not_get_a_process_killed(tmp_path, own_temp):
    """A marker and pid file someone else wrote must not make the bot signal an unrelated process."""
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        forged = tmp_path / "dbops-rehearsal-forged"
        (forged / "server" / "data").mkdir(parents=True)
        (forged / pginstance.MARKER_FILE).write_text(json.dumps({"purpose": "rehearsal", "pid": 1,
                                                                 "pid_started": 0}))
        (forged / "server" / "data" / "postmaster.pid").write_text(f"{victim.pid}\n")
        said = remove_leftover_rehearsals(tmp_path)
        assert said == [f"removed a leftover rehearsal server (dbops-rehearsal-forged) from {tmp_path}"]
        assert victim.poll() is None  # not a postmaster of that folder: not signalled
    finally:
        victim.kill()
        victim.wait()
