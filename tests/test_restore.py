"""`dbops restore` and the night production is gone: the state store lived on it (the default), the
server is killed, and `backup list`, `backup verify`, `drill` and `restore latest --into recovery`
still work from the storage alone: local and S3, encrypted and not. Real servers, real dbops runs."""
from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import boto3
import psycopg
import pytest
from moto.server import ThreadedMotoServer

from handlers import demo_data
from handlers.postgres import TemporaryInstance

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "dbops-restore"
KEY = base64.b64encode(bytes(range(32))).decode()

APP_SCHEMA = """
CREATE ROLE notes_owner NOLOGIN;
CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE);
CREATE TABLE notes (id bigserial PRIMARY KEY, user_id bigint NOT NULL REFERENCES users(id), t text, body text);
CREATE INDEX notes_user ON notes (user_id);
INSERT INTO users (email) SELECT 'u' || g || '@example.org' FROM generate_series(1, 200) g;
INSERT INTO notes (user_id, t, body)
    SELECT 1 + g % 200, 'title ' || g, repeat('x', g % 50) FROM generate_series(1, 3000) g;
CREATE TABLE audit (id int PRIMARY KEY, what text);
ALTER TABLE audit OWNER TO notes_owner;
INSERT INTO audit VALUES (1, 'created');
"""


def dbops(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DBOPS_", "DATABASE_URL", "SLACK_", "AWS_"))}
    base |= {"PYTHONPATH": str(ROOT), "DBOPS_DOTENV": "/nonexistent/.env"}
    return subprocess.run([sys.executable, "-m", "bot.frontends.cli", *args], capture_output=True, text=True,
                          env={**base, **env}, cwd=ROOT, timeout=300, input=stdin)


@pytest.fixture(scope="module")
def s3_url():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing-secret").create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


def storage_config(kind: str, tmp: Path, s3_url: str) -> tuple[Path, dict[str, str]]:
    """(dbops.toml, environment) for one kind of storage: local or s3, plain or encrypted."""
    storage, encrypted = kind.split("-")
    lines = ["[targets.recovery]", 'url_env = "RECOVERY_DATABASE_URL"', "", "[backup]",
             f'storage = "{storage}"', f"encrypt = {'true' if encrypted == 'enc' else 'false'}"]
    if storage == "s3":
        lines += ["[backup.s3]", f'bucket = "{BUCKET}"', f'prefix = "{kind}"', f'endpoint_url = "{s3_url}"',
                  'region = "us-east-1"']
    lines += ["", "[drill]", 'instance = "local"']
    path = tmp / f"{kind}.toml"
    path.write_text("\n".join(lines) + "\n")
    env = {"DBOPS_CONFIG": str(path), "DBOPS_BACKUP_DIR": str(tmp / kind)}
    if encrypted == "enc":
        env["DBOPS_BACKUP_KEY"] = KEY
    if storage == "s3":
        env |= {"DBOPS_S3_ACCESS_KEY_ID": "testing", "DBOPS_S3_SECRET_ACCESS_KEY": "testing-secret"}
    return path, env


KINDS = ("local-plain", "local-enc", "s3-plain", "s3-enc")


@pytest.fixture(scope="module")
def dead_production(tmp_path_factory, s3_url):
    """Production with the state store on it, backed up to every kind of storage, then killed."""
    tmp = tmp_path_factory.mktemp("restore")
    prod = TemporaryInstance(purpose="test-prod").start()
    try:
        demo_data.create_database(prod.dsn(), "asidenote")
        dsn = prod.dsn("asidenote")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(APP_SCHEMA)
        backups, envs = {}, {}
        for kind in KINDS:
            _, env = storage_config(kind, tmp, s3_url)
            env["DATABASE_URL"] = dsn  # and DBOPS_STATE_URL unset: the state store is production
            envs[kind] = env
            done = dbops("backup", "--format", "json", env={**env, "RECOVERY_DATABASE_URL": dsn})
            assert done.returncode == 0, done.stderr + done.stdout
            import json
            backups[kind] = json.loads(done.stdout)["backup_id"]
    finally:
        prod.stop()  # production is gone, and the catalog with it
    return {"backups": backups, "envs": envs, "dsn": dsn}


@pytest.mark.parametrize("kind", KINDS)
def test_with_production_gone_list_verify_and_restore_from_storage(dead_production, kind, fresh_db):
    env = {**dead_production["envs"][kind], "RECOVERY_DATABASE_URL": fresh_db}
    backup_id = dead_production["backups"][kind]

    listed = dbops("backup", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "state database is unreachable" in listed.stdout and backup_id in listed.stdout

    verified = dbops("backup", "verify", backup_id, env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "state database is unreachable" in verified.stdout and "is verified" in verified.stdout

    restored = dbops("restore", "latest", "--into", "recovery", "--confirm", "recovery", env=env)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    out = restored.stdout
    assert "state database is unreachable" in out and f"Restored {backup_id}" in out
    assert "row counts and content checksums of 3 tables" in out  # the drill's checks, against the manifest
    assert 'CREATE ROLE "notes_owner" NOLOGIN;' in out and "Suspend the old database" in out
    for step in ("choose backup", "check target", "fetch archive", "restore", "verify"):
        assert step in out
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT t) FROM notes").fetchone() == (3000, 3000)
        assert conn.execute("SELECT nextval('notes_id_seq')").fetchone()[0] > 3000
        # the old bot's state: not even the schema
        assert conn.execute("SELECT to_regnamespace('dbops')").fetchone()[0] is None
    assert KEY not in out + restored.stderr


def test_drill_from_storage_with_production_gone(dead_production):
    env = dead_production["envs"]["local-enc"]
    done = dbops("drill", env={**env, "RECOVERY_DATABASE_URL": "postgresql:///unused"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "state database is unreachable" in done.stdout and "not recorded" in done.stdout


def test_commands_that_need_the_state_store_still_say_it_is_unreachable(dead_production):
    env = {**dead_production["envs"]["local-plain"], "RECOVERY_DATABASE_URL": "postgresql:///unused"}
    done = dbops("drill", "history", env=env)
    assert done.returncode != 0 and "state database" in done.stderr and "unreachable" in done.stderr


# -- refusals ----------------------------------------------------------------------------

@pytest.fixture
def live(tmp_path, fresh_db, pg_server, s3_url):
    """A reachable production (with its state store) and one backup of it in local storage."""
    name = f"prod_{os.getpid()}_{abs(hash(tmp_path))}"
    demo_data.create_database(pg_server.dsn(), name)
    dsn = pg_server.dsn(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(APP_SCHEMA.replace("CREATE ROLE notes_owner NOLOGIN;", "")
                     .replace("ALTER TABLE audit OWNER TO notes_owner;", ""))
    _, env = storage_config("local-plain", tmp_path, s3_url)
    env |= {"DATABASE_URL": dsn, "RECOVERY_DATABASE_URL": fresh_db}
    done = dbops("backup", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    yield env, dsn, fresh_db
    demo_data.drop_database(pg_server.dsn(), name)


def test_restore_asks_for_the_target_name_and_refuses_without_it(live):
    env, _, recovery = live
    done = dbops("restore", "latest", "--into", "recovery", env=env)  # no terminal: no question to ask
    assert done.returncode == 2 and "--confirm recovery" in done.stderr
    done = dbops("restore", "latest", "--into", "recovery", "--confirm", "prod", env=env)
    assert done.returncode == 2 and "does not name the target" in done.stderr
    with psycopg.connect(recovery) as conn:
        assert conn.execute("SELECT to_regclass('public.notes')").fetchone()[0] is None  # nothing was done


def test_restore_refuses_a_target_with_tables_and_the_source_itself(live):
    env, prod, recovery = live
    with psycopg.connect(recovery, autocommit=True) as conn:
        conn.execute("CREATE TABLE precious (id int)")
        conn.execute("INSERT INTO precious VALUES (42)")
    done = dbops("restore", "latest", "--into", "recovery", "--confirm", "recovery", env=env)
    assert done.returncode == 2 and "not empty" in done.stderr and "public.precious" in done.stderr
    with psycopg.connect(recovery) as conn:
        assert conn.execute("SELECT id FROM precious").fetchone() == (42,)

    # The same database under another target name is still the source.
    same = {**env, "RECOVERY_DATABASE_URL": prod}
    done = dbops("restore", "latest", "--into", "recovery", "--confirm", "recovery", env=same)
    assert done.returncode == 2 and "source database" in done.stderr
    done = dbops("restore", "latest", "--into", "prod", "--confirm", "prod", env=env)
    assert done.returncode == 2 and "source database" in done.stderr

    done = dbops("restore", "latest", "--into", "recovery", "--confirm", "recovery", "--overwrite", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    with psycopg.connect(recovery) as conn:
        assert conn.execute("SELECT to_regclass('public.precious')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 3000


def test_restore_with_backup_after_and_a_typed_confirmation_is_refused_when_mistyped(live):
    env, _, recovery = live
    done = dbops("restore", "latest", "--into", "recovery", "--confirm", "recovery", "--backup-after",
                 "--format", "json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    import json
    data = json.loads(done.stdout)
    assert data["backup_after"]["ok"] and data["backup_after"]["backup_id"]
    assert [s["step"] for s in data["steps"]][-1] == "backup after"
    listed = dbops("backup", "list", "--target", "recovery", env=env)
    assert data["backup_after"]["backup_id"] in listed.stdout


def test_a_subscription_of_the_source_is_left_out_of_the_restore_and_said(live):
    import json

    env, prod, recovery = live
    with psycopg.connect(prod, autocommit=True) as conn:  # connect = false: it never reaches a publisher
        conn.execute("CREATE SUBSCRIPTION notes_sync CONNECTION 'host=/nonexistent dbname=notes'"
                     " PUBLICATION notes WITH (connect = false, slot_name = NONE, enabled = false)")
    try:
        assert dbops("backup", env=env).returncode == 0
        done = dbops("restore", "latest", "--into", "recovery", "--confirm", "recovery", "--format", "json", env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        left = [c for c in json.loads(done.stdout)["checks"] if c["name"] == "left out of the restore"]
        assert len(left) == 1 and left[0]["ok"] and left[0]["warning"]
        assert "SUBSCRIPTION - notes_sync" in left[0]["detail"] and "create them again by hand" in left[0]["detail"]
        with psycopg.connect(recovery) as conn:  # pg_subscription is the cluster's: this database's rows only
            assert conn.execute("SELECT count(*) FROM pg_subscription WHERE subdbid = "
                                "(SELECT oid FROM pg_database WHERE datname = current_database())").fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 3000
    finally:
        with psycopg.connect(prod, autocommit=True) as conn:
            conn.execute("DROP SUBSCRIPTION notes_sync")
