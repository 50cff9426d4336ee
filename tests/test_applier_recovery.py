"""A restore or a read-only role request whose bot process is killed (SIGKILL: nothing of it runs
to clean up) while applying: the next bot settles it at start-up, in its thread, instead of leaving it
`applying` for good; the half-restored target says it holds an unfinished restore until a restore into
it finishes. The real bot over signed HTTP, the fake Slack, real databases."""
from __future__ import annotations

import psycopg
import pytest

from handlers.restore import restore_mark
from handlers.target import Target
from tests.test_cli import dbops as dbops_with
from tests.test_migrations_e2e import ALICE, BOSS, dbops, react, request_message, request_status, thread_texts

BOSS2 = "U0BOSS2"


def waiting_on_a_lock(dsn: str, statement: str) -> bool:
    """Whether a session of the database waits for a lock while running `statement...`."""
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                            " AND wait_event_type = 'Lock' AND query ILIKE %s", (statement + "%",)).fetchone()[0] > 0


def kill_while_it_waits(bot, fake_slack, holder, dsn: str, statement: str, state_dsn: str,
                        approvers: list[str]) -> str:
    """The approvers approve r001; once the bot's session waits on `holder`'s lock while running
    `statement`, mid-apply, the bot is killed and the lock released."""
    try:
        ts = hint_ts(fake_slack)
        for approver in approvers:
            react(bot, approver, ts)
        fake_slack.wait_for(lambda: waiting_on_a_lock(dsn, statement), what=f"the apply at {statement}", timeout=120)
        assert request_status(state_dsn, "r001") == "applying"
        bot.kill()
    finally:
        holder.rollback()
        holder.close()
    return ts


def hint_ts(fake_slack) -> str:
    return fake_slack.wait_for(lambda: fake_slack.calls_to("reactions.add"), what="the hint reactions")[0] \
        .params["timestamp"]


@pytest.fixture
def restore_setup(demo_db, fresh_db, tmp_path):
    (tmp_path / "dbops.toml").write_text("")
    taken = dbops("backup", dsn=demo_db, cwd=tmp_path)
    assert taken.returncode == 0, taken.stderr
    (tmp_path / "dbops.toml").write_text('[targets.recovery]\nurl_env = "RECOVERY_URL"\n')
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE in_the_way (id int)")  # --overwrite drops it: the clear step waits for our lock
    return demo_db, fresh_db


def test_a_restore_killed_while_applying_is_failed_at_the_next_start_and_its_target_says_unfinished(
        bot_factory, fake_slack, restore_setup, tmp_path):
    prod, recovery = restore_setup
    env = {"RECOVERY_URL": recovery, "DBOPS_APPROVERS": f"{BOSS},{ALICE},{BOSS2}"}
    bot = bot_factory(prod, **env)
    assert bot.command("restore latest --into recovery --overwrite", user=BOSS).status_code == 200
    fake_slack.wait_for(lambda: request_message(fake_slack, "r001"), what="the restore request", timeout=60)
    holder = psycopg.connect(recovery)
    holder.execute("LOCK TABLE in_the_way IN ACCESS SHARE MODE")  # held until rolled back
    ts = kill_while_it_waits(bot, fake_slack, holder, recovery, "DROP SCHEMA", prod, [ALICE, BOSS2])  # --overwrite
    assert restore_mark(Target("recovery", recovery)) is not None  # marked before its first change

    bot_factory(prod, **env)
    fake_slack.wait_for(lambda: request_status(prod, "r001") == "failed", what="the restore settled", timeout=60)
    # The status is settled before the thread is told: wait for the line, not only the status.
    fake_slack.wait_for(lambda: any(t.startswith(":x: `r001` failed (found after its process stopped): "
                                                 "the bot stopped while restoring into `recovery`")
                                    for t in thread_texts(fake_slack, ts)), what="the line in the thread")
    with psycopg.connect(prod) as conn:
        detail = conn.execute("SELECT status_detail FROM dbops.approval_requests WHERE id = 1").fetchone()[0]
    assert "marked incomplete" in detail

    status = dbops_with("status", "--target", "recovery", env=_terminal(prod, recovery, tmp_path), cwd=tmp_path)
    assert status.returncode == 1 and "unfinished restore" in status.stdout, status.stdout + status.stderr
    done = dbops_with("restore", "latest", "--into", "recovery", "--confirm", "recovery", "--overwrite",
                      env=_terminal(prod, recovery, tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert restore_mark(Target("recovery", recovery)) is None  # a restore finished: the mark is gone
    with psycopg.connect(recovery) as conn:  # and with it the schema: the restored database holds only the backup
        assert conn.execute("SELECT to_regnamespace('dbops')").fetchone()[0] is None


def _terminal(prod: str, recovery: str, tmp_path) -> dict[str, str]:
    return {"DATABASE_URL": prod, "RECOVERY_URL": recovery, "DBOPS_CONFIG": str(tmp_path / "dbops.toml"),
            "DBOPS_BACKUP_DIR": str(tmp_path / "backups")}


def test_a_read_only_role_request_killed_while_applying_is_failed_at_the_next_start(bot_factory, fake_slack, demo_db):
    name = "ro_killed_while_applying"
    env = {"DBOPS_APPROVERS": f"{BOSS},{ALICE}"}
    bot = bot_factory(demo_db, **env)
    assert bot.command(f"readonly create {name}", user=BOSS).status_code == 200
    fake_slack.wait_for(lambda: request_message(fake_slack, "r001"), what="the readonly request", timeout=60)
    holder = psycopg.connect(demo_db)
    holder.execute(f'CREATE ROLE "{name}"')  # not committed: the bot's CREATE ROLE waits for it
    ts = kill_while_it_waits(bot, fake_slack, holder, demo_db, "CREATE ROLE", demo_db, [ALICE])

    bot_factory(demo_db, **env)
    fake_slack.wait_for(lambda: request_status(demo_db, "r001") == "failed", what="the request settled", timeout=60)
    fake_slack.wait_for(lambda: any(t.startswith(":x: `r001` failed (found after its process stopped): "
                                                 f"the bot stopped while creating `{name}`")
                                    for t in thread_texts(fake_slack, ts)), what="the line in the thread")
    with psycopg.connect(demo_db) as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is None

    def job() -> list:
        with psycopg.connect(demo_db) as conn:
            return conn.execute("SELECT kind, status FROM dbops.jobs WHERE command = 'readonly r001'").fetchall()

    # It ran as a readonly job (never beside a `readonly rotate`), marked failed once its heartbeat is stale.
    fake_slack.wait_for(lambda: job() == [("readonly", "failed")], what="the interrupted job marked", timeout=60)
