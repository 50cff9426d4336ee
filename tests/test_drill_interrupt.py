"""Ctrl-C during a drill: the instance is deleted, the drill is recorded as cancelled, and the terminal
says "interrupted" and nothing else (no verdict from the checks that happened to run).

The signal is sent at a known point (a progress line, never a sleep): in-process at each step, and to
a real `dbops drill`'s whole process group as a terminal does, so pg_restore and pg_amcheck get it too.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import psycopg
import pytest

from handlers.drill import run_drill
from handlers.drill.runner import DrillInterrupted
from tests.drill_support import ROOT, assert_nothing_left, demo_backup, settings, work  # noqa: F401 -- fixtures

CLIENTS = ("pg_restore", "pg_amcheck")


def client_children() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name() in CLIENTS and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def ctrl_c() -> None:
    """What a terminal does: SIGINT to the client programs this process runs, and to this process."""
    for child in client_children():
        child.send_signal(signal.SIGINT)
    os.kill(os.getpid(), signal.SIGINT)


# (phase, start of the progress detail) at which Ctrl-C comes, and the step it stops
POINTS = [
    ("create instance", "", "create instance"),  # the step's first tick
    ("restore", "checking the archive", "restore"),
    ("restore", "loading", "restore"),  # told from pg_restore's output thread, while pg_restore runs
    ("verify", "row counts", "verify"),  # pg_amcheck runs beside it
    ("verify", "waiting for pg_amcheck", "verify"),
    ("delete instance", "", None),  # waits for the instance to go, then stops
]


@pytest.mark.parametrize("phase, detail, stopped", POINTS, ids=[f"{p[0]}: {p[1] or 'start'}" for p in POINTS])
def test_ctrl_c_at_each_point_deletes_the_instance_and_gives_no_verdict(demo_backup, work, phase, detail, stopped):
    manifest, archive = demo_backup
    seen, sent = [], []

    def progress(p):
        seen.append(p)
        if not sent and p.phase == phase and p.detail.startswith(detail):
            sent.append(p)
            ctrl_c()

    with pytest.raises(DrillInterrupted) as raised:
        run_drill(manifest, archive, settings(work), progress=progress)
    assert sent, f"never reached {phase}: {detail}"
    result = raised.value.result
    assert isinstance(raised.value, KeyboardInterrupt)
    assert result.cancelled and not result.passed and result.outcome == "cancelled"
    assert "passed" not in result.summary and result.summary.startswith("Drill cancelled")
    assert not [p for p in seen if p.phase == "done"], "an interrupted drill reports no verdict"
    outcomes = {s["step"]: s["outcome"] for s in result.steps}
    assert outcomes["delete instance"] == "ok", result.steps
    if stopped != "create instance":  # an instance was made: it went
        assert result.steps[-1]["detail"].startswith("deleted "), result.steps
    if stopped:
        assert outcomes[stopped] == "cancelled"
        assert next(s for s in result.steps if s["step"] == stopped)["detail"] == "interrupted (Ctrl-C)"
        # pg_restore or pg_amcheck dying of the same Ctrl-C is no finding: the stopped step's checks are gone
        assert all(c.ok for c in result.checks) and not result.restore_errors, result.checks
    assert "running" not in outcomes.values()
    assert_nothing_left(work)
    assert not client_children()


# -- a real `dbops drill` in a terminal ----------------------------------------------------------------

def dbops_env(database_url: str, tmp_path) -> dict[str, str]:
    config = tmp_path / "dbops.toml"
    # A smoke query that sleeps: the drill cannot finish before the signal lands, however loaded the machine.
    config.write_text((ROOT / "dbops.toml").read_text() + f"""
[drill]
work_dir = "{tmp_path / 'drills'}"
jobs = 1
smoke_timeout_s = 600

[[drill.smoke_queries]]
name = "a long read"
sql = "SELECT pg_sleep(600) IS NULL"
expect = "true"
""")
    (tmp_path / "drills").mkdir()
    os.chmod(tmp_path / "drills", 0o755)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DBOPS_", "DATABASE_URL", "SLACK_"))}
    return base | {"PYTHONPATH": str(ROOT), "DBOPS_DOTENV": "/nonexistent/.env", "DATABASE_URL": database_url,
                   "DBOPS_BACKUP_DIR": str(tmp_path / "backups"), "DBOPS_CONFIG": str(config)}


@pytest.fixture
def drill_dir():
    """Under /tmp directly, as tests/test_drill.py's `work` explains (pytest's tmp_path can be closed to postgres)."""
    folder = Path(tempfile.mkdtemp(prefix="drillcli-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("phase", ["restore", "verify"])
def test_ctrl_c_in_dbops_drill_prints_only_interrupted_and_records_a_cancelled_drill(demo_db, drill_dir, phase):
    env = dbops_env(demo_db, drill_dir)
    backup = subprocess.run([sys.executable, "-m", "bot.frontends.cli", "backup"], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=300)
    assert backup.returncode == 0, backup.stdout + backup.stderr

    # A session of its own, so the SIGINT goes to its whole process group like a terminal's Ctrl-C.
    proc = subprocess.Popen([sys.executable, "-m", "bot.frontends.cli", "drill"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, start_new_session=True)
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if line.startswith(phase):
                os.killpg(proc.pid, signal.SIGINT)
                break
        else:
            pytest.fail(f"the drill never reached {phase}: {''.join(lines)}")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = "".join(lines) + err
    assert proc.returncode == 130, (out, err)
    assert out == ""
    assert err.rstrip().splitlines()[-1] == "interrupted"
    assert "passed" not in err and "Drill" not in err and "Traceback" not in err, err

    with psycopg.connect(demo_db) as conn:
        rows = conn.execute("SELECT outcome, passed, result -> 'steps' FROM dbops.drills").fetchall()
    assert len(rows) == 1 and rows[0][:2] == ("cancelled", False)
    steps = {s["step"]: s["outcome"] for s in rows[0][2]}
    assert steps["delete instance"] == "ok"
    assert steps["verify" if phase == "verify" else "restore"] == "cancelled" or \
        phase == "restore" and steps["verify"] == "cancelled"  # a restore that finished first: verify stopped
    assert [p.name for p in (drill_dir / "drills").iterdir()] == []
