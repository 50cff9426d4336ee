"""The Render commands through the real `dbops` command line, against the fake Render."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tests.fakes.render_api import FakeRender

ROOT = Path(__file__).resolve().parent.parent
KEY = "rnd_CliK3yThatMustNeverShow"


def dbops(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot.frontends.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**{k: v for k, v in os.environ.items()
                                  if not k.startswith(("RENDER_", "DBOPS_", "DATABASE_URL", "SLACK_"))},
                               "PYTHONPATH": str(ROOT), "DBOPS_DOTENV": "/nonexistent/.env",
                               **env}, timeout=120)


@pytest.fixture
def fake():
    server = FakeRender(KEY).start()
    yield server
    server.stop()
    assert server.schema_errors == []


def test_render_status_exit_codes_and_json_without_the_key(fake, fresh_db, tmp_path):
    good = fake.add_instance("asidenote-db", window=timedelta(days=3, hours=2))
    short = fake.add_instance("other-db", window=timedelta(days=1))
    toml = tmp_path / "dbops.toml"
    toml.write_text(f'[targets.other]\nurl_env = "OTHER_URL"\nrender_postgres_id = "{short["id"]}"\n')
    env = {"DATABASE_URL": fresh_db, "OTHER_URL": fresh_db, "RENDER_API_KEY": KEY, "RENDER_API_URL": fake.url,
           "RENDER_POSTGRES_ID": good["id"], "DBOPS_CONFIG": str(toml)}
    done = dbops("render", "status", "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["instance"]["name"] == "asidenote-db"
    done = dbops("render", "status", "--target", "other", env=env)
    assert done.returncode == 1 and "reaches back only 24 h" in done.stdout
    status = dbops("status", "--format", "json", env=env)
    checks = [c for c in json.loads(status.stdout)["checks"] if c["title"].startswith("Render")]
    assert {c["ok"] for c in checks} == {True, False}
    wrong = dbops("render", "status", env={**env, "RENDER_API_KEY": "rnd_wrongwrongwrong"})
    assert wrong.returncode != 0 and "check RENDER_API_KEY" in wrong.stdout + wrong.stderr
    for out in (done, status, wrong):
        assert KEY not in out.stdout + out.stderr and "rnd_wrongwrongwrong" not in out.stdout + out.stderr


def test_render_drill_is_for_approvers_only():
    from bot.areas import AREAS
    from bot.core.registry import Registry

    COMMANDS = Registry(AREAS).commands
    assert COMMANDS["both:render drill"].who == "approvers"
    assert COMMANDS["both:render export-drill"].who == "anyone"
    assert COMMANDS["both:render drill"].lock_kind == COMMANDS["both:render export-drill"].lock_kind == "drill"


def test_drill_on_render_and_from_render_export_are_the_render_drills():
    from bot.areas import AREAS
    from bot.core.registry import Registry

    registry = Registry(AREAS)
    on_render = registry.parse("drill --on render", "slack", prog="/db")
    assert on_render[0].name == "drill" and on_render[0].approver_only(on_render[1])  # a billed instance
    local = registry.parse("drill", "slack", prog="/db")
    assert not local[0].approver_only(local[1])
    export = registry.parse("drill --from render-export", "slack", prog="/db")
    assert not export[0].approver_only(export[1])


def test_dbops_drill_on_render_runs_the_render_drill(fresh_db, tmp_path):
    (tmp_path / "dbops.toml").write_text("")
    done = dbops("drill", "--on", "render", env={"DATABASE_URL": fresh_db, "DBOPS_CONFIG": str(tmp_path / "dbops.toml"),
                                                  "DBOPS_BACKUP_DIR": str(tmp_path / "b")})
    assert done.returncode == 2 and "RENDER_API_KEY" in done.stderr, done.stderr
