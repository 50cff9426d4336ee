"""`dbops demo`, the README's first command: every step runs on a throwaway database and all is removed."""
from __future__ import annotations

from bot.areas.demo import DEMO_STEPS, EXAMPLES
from tests.test_cli import dbops


def test_the_demo_runs_every_step_and_exits_0(tmp_path):
    assert EXAMPLES.is_dir()  # the migration steps are not skipped in a checkout
    done = dbops("demo", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("\n$ dbops ") == len(DEMO_STEPS)
    assert f"ran {len(DEMO_STEPS)} commands" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert not list(tmp_path.iterdir())  # nothing left behind where it ran
