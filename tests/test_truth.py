"""The bot tells the truth: status that does not say "all good" over a failure, settings and
targets checked before anything runs, help for every command, and jobs that are finished by
the path that started them, whatever the front end."""
from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest

from tests.fakes.bot_process import view_submission
from tests.test_cli import dbops


def _env(dsn: str, tmp_path: Path, toml: str = "") -> dict[str, str]:
    (tmp_path / "dbops.toml").write_text(toml)
    return {"DATABASE_URL": dsn, "DBOPS_CONFIG": str(tmp_path / "dbops.toml"),
            "DBOPS_BACKUP_DIR": str(tmp_path / "backups")}


# -- status ---------------------------------------------------------------------------------------
def test_status_is_not_all_good_when_the_newest_backup_failed_verification_and_drills_failed(demo_db, tmp_path):
    env = _env(demo_db, tmp_path)
    assert dbops("backup", env=env).returncode == 0
    assert dbops("status", env=env).returncode == 1  # no drill has passed yet
    with psycopg.connect(demo_db, autocommit=True) as conn:
        for n in (1, 2):  # two drills that passed long ago... then the newest backup breaks
            conn.execute("INSERT INTO dbops.drills (target, backup_id, requested_by, started_at, finished_at, outcome,"
                         " instance_kind, total_s, summary, result) VALUES ('prod', 'b001', 'test', now(), now(),"
                         " 'passed', 'local', 1, 'all checks passed', '{}')")
    assert dbops("status", env=env).returncode == 0
    archive = next((tmp_path / "backups").rglob("b001*.dump"))
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    assert dbops("backup", "verify", "b001", env=env).returncode == 1
    with psycopg.connect(demo_db, autocommit=True) as conn:
        for n in (1, 2):
            conn.execute("INSERT INTO dbops.drills (target, backup_id, requested_by, started_at, finished_at, outcome,"
                         " instance_kind, total_s, summary, result) VALUES ('prod', 'b001', 'test', now(), now(),"
                         " 'failed', 'local', 1, '1 check failed: rows', '{}')")
    shown = dbops("status", env=env)
    assert shown.returncode == 1, shown.stdout
    assert "b001" in shown.stdout and "FAILED" in shown.stdout.upper()
    assert "last 2 drills failed" in shown.stdout
    as_json = json.loads(dbops("status", "--format", "json", env=env).stdout)
    assert as_json["outcome"] == "failed"
    assert len(as_json["problems"]) == 2
    assert {c["title"] for c in as_json["checks"]} >= {"Backups", "Drills", "Approvals"}
    assert as_json["schedules"] and as_json["targets"][0]["name"] == "prod"


def test_status_watches_every_target_not_only_prod(demo_db, fresh_db, tmp_path):
    env = _env(demo_db, tmp_path, '[targets.staging]\nurl_env = "STAGING_URL"\n') | {"STAGING_URL": fresh_db}
    as_json = json.loads(dbops("status", "--format", "json", env=env).stdout)
    titles = {c["title"] for c in as_json["checks"]}
    assert {"Backups (prod)", "Backups (staging)", "Drills (staging)"} <= titles
    assert any("staging" in p for p in as_json["problems"])


# -- inputs and settings -----------------------------------------------------------------------------
@pytest.mark.parametrize("words", [["backup", "list"], ["drill", "history"], ["backup", "prune", "--dry-run"],
                                   ["backup", "verify", "b001"], ["migrate", "status"], ["status"],
                                   ["backup", "info", "b001"], ["drill", "schedule"], ["indexes"]])
def test_an_unknown_target_is_an_error_naming_the_known_ones(words, fresh_db, tmp_path):
    done = dbops(*words, "--target", "prdo", env=_env(fresh_db, tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "unknown target prdo" in done.stderr and "prod" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("toml, key, value", [
    ('[indexes]\nwindow_days = "thirty"\n', "indexes.window_days", '"thirty"'),
    ('[approvals]\nexpires_hours = "soon"\n', "approvals.expires_hours", '"soon"'),
    ('[migrate.apply]\nlock_timeout_s = "5s"\n', "migrate.apply.lock_timeout_s", '"5s"'),
    ('[backup]\nformat = "zip"\n', "backup.format", '"zip"'),
    ('[drill]\njobs = "many"\n', "drill.jobs", '"many"'),
    ('[digest]\ntime = "nine"\n', "digest.time", ""),
    ('[indexs]\nwindow_days = 3\n', "[indexs]", ""),
])
def test_every_setting_of_every_section_is_checked_before_a_command_runs(toml, key, value, fresh_db, tmp_path):
    done = dbops("status", env=_env(fresh_db, tmp_path, toml))
    assert done.returncode == 2
    first, *rest = done.stderr.strip().splitlines()  # one error, wrapped at the terminal's width
    said = " ".join([first, *(line.strip() for line in rest)])
    assert first.startswith("error: ") and all(line.startswith(" ") for line in rest), done.stderr
    assert key in said and value in said, done.stderr
    assert "Traceback" not in done.stderr


def test_the_bot_does_not_start_with_a_bad_setting(bot_factory, fresh_db, tmp_path):
    (tmp_path / "dbops.toml").write_text('[indexes]\nwindow_days = "thirty"\n')
    with pytest.raises(RuntimeError) as failed:
        bot_factory(fresh_db)
    assert "indexes.window_days" in str(failed.value) and "Traceback" not in str(failed.value)


@pytest.mark.parametrize("words, shows", [
    (["backup", "--help"], "dbops backup list"),
    (["migrate", "check", "--help"], "dbops migrate check <up>"),
    (["help", "backup"], "dbops backup verify <id>"),
    (["help", "migrate", "check"], "--down DOWN"),
])
def test_per_command_help_comes_from_the_registry(words, shows):
    done = dbops(*words)
    assert done.returncode == 0, done.stderr
    assert shows in done.stdout


def test_demo_refuses_a_scale_of_zero_without_a_traceback():
    done = dbops("demo", "--scale", "0")
    assert done.returncode == 2
    assert "--scale" in done.stderr and "1 to 100" in done.stderr and "Traceback" not in done.stderr


def test_errors_are_json_on_stdout_with_format_json(fresh_db, tmp_path):
    done = dbops("backup", "info", "b999", "--format", "json", env=_env(fresh_db, tmp_path))
    assert done.returncode == 2
    answer = json.loads(done.stdout)
    assert "b999" in answer["error"] and answer["exit_code"] == 2


# -- jobs through the real bot ---------------------------------------------------------------------
def _jobs(dsn):
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT id, kind, status, summary FROM dbops.jobs ORDER BY id").fetchall()


def test_a_request_from_the_slack_form_finishes_its_job_and_raises_no_false_alarm(bot_factory, fake_slack,
                                                                                  demo_db, tmp_path):
    bot = bot_factory(demo_db)
    values = {"name": {"value": {"type": "plain_text_input", "value": "add-flag"}},
              "up": {"value": {"type": "plain_text_input", "value": 'ALTER TABLE "Notes" ADD COLUMN "Flag" boolean;'}},
              "down": {"value": {"type": "plain_text_input", "value": 'ALTER TABLE "Notes" DROP COLUMN "Flag";'}},
              "staging": {"value": {"type": "checkboxes", "selected_options": []}}}
    body = view_submission("U0ALICE", "dbops_migrate", json.dumps({"mode": "request", "channel": "C0OPS"}), values)
    assert bot.post_signed(body, "application/x-www-form-urlencoded").status_code == 200
    fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.postMessage")
                                 if "request r001" in c.params["text"]], what="the request message", timeout=90)
    fake_slack.wait_for(lambda: [j for j in _jobs(demo_db) if j[2] == "succeeded"], what="the job finished")
    ticks_before = len(fake_slack.calls)
    deadline = time.monotonic() + 8  # several scheduler ticks (1 s) and stale periods (3 s)
    while time.monotonic() < deadline and len(fake_slack.calls) == ticks_before:
        time.sleep(0.5)
    assert not [t for t in fake_slack.texts() if "interrupted" in t]
    assert [j[2] for j in _jobs(demo_db)] == ["succeeded"]


def test_a_state_database_error_when_starting_a_job_is_told_to_the_user(bot_factory, fake_slack, demo_db):
    bot = bot_factory(demo_db)
    with psycopg.connect(demo_db, autocommit=True) as conn:  # every new job row is refused from now on
        conn.execute("ALTER TABLE dbops.jobs ADD CONSTRAINT refuse_all CHECK (false) NOT VALID")
    assert "queued" in bot.command("backup").text
    told = fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.postEphemeral")
                                        if "did not start" in c.params["text"]], what="the error note")
    assert told[0].params["user"] == "U0ALICE" and "try again" in told[0].params["text"]


def _queue_behind_a_backup_then(stop: str, bot, fake_slack, demo_db) -> None:
    """The one worker busy with a backup that waits for a lock, `indexes` from U0BOB queued behind
    it; then the bot is stopped (`stop`: "stop" gracefully, "kill" with SIGKILL)."""
    conn = psycopg.connect(demo_db)
    conn.execute('LOCK TABLE "Notes" IN ACCESS EXCLUSIVE MODE')  # the one worker waits in pg_dump
    try:
        bot.command("backup")
        fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.postMessage")
                                     if "started by" in c.params["text"]], what="the backup running")
        assert "queued" in bot.command("indexes", user="U0BOB").text
        getattr(bot, stop)()
    finally:
        conn.close()


def test_work_still_queued_when_the_bot_stops_is_told_not_dropped(bot_factory, fake_slack, demo_db):
    _queue_behind_a_backup_then("stop", bot_factory(demo_db, DBOPS_WORKERS="1"), fake_slack, demo_db)
    told = [c for c in fake_slack.calls_to("chat.postEphemeral") if "before `indexes` could start" in c.params["text"]]
    assert len(told) == 1 and told[0].params["user"] == "U0BOB"


def test_per_command_help_in_slack_too(bot_factory, fresh_db):
    bot = bot_factory(fresh_db)
    for text, shows in (("backup --help", "/db backup verify &lt;id&gt;"),  # Slack escapes <>
                        ("help migrate check", "opens a form for the SQL"),
                        ("drill history -h", "/db drill history")):
        answer = bot.command(text)
        assert answer.status_code == 200
        assert shows in json.dumps(answer.json()), text


def test_work_still_queued_when_the_bot_is_killed_is_told_at_the_next_start(bot_factory, fake_slack, demo_db):
    # SIGKILL: nothing of the bot runs to tell anyone
    _queue_behind_a_backup_then("kill", bot_factory(demo_db, DBOPS_WORKERS="1"), fake_slack, demo_db)
    assert not [c for c in fake_slack.calls_to("chat.postEphemeral") if "`indexes`" in c.params["text"]]
    bot_factory(demo_db, DBOPS_WORKERS="1")
    told = fake_slack.wait_for(lambda: [c for c in fake_slack.calls_to("chat.postEphemeral")
                                        if "before `indexes` could start" in c.params["text"]],
                               what="the requester told", timeout=60)
    assert len(told) == 1 and told[0].params["user"] == "U0BOB" and "killed or crashed" in told[0].params["text"]
    with psycopg.connect(demo_db) as check:
        assert check.execute("SELECT count(*) FROM dbops.queued_work").fetchone()[0] == 0
