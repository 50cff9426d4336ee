"""`dbops demo`, the README's first command: every step runs on a throwaway database and all is removed."""
from __future__ import annotations

from bot.areas.demo import DEMO_STEPS, EXAMPLES, FIRST_STATUS_NOTE
from bot.core import plaintext
from tests.test_cli import dbops


def test_the_demo_runs_every_step_and_exits_0(tmp_path):
    assert EXAMPLES.is_dir()  # the migration steps are not skipped in a checkout
    done = dbops("demo", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("\n$ dbops ") == len(DEMO_STEPS)
    assert f"ran {len(DEMO_STEPS)} commands" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert not list(tmp_path.iterdir())  # nothing left behind where it ran
    # The first status fails on a fresh database, and the demo says why before it; the last is green.
    opening = done.stdout.split("\n$ dbops status\n")[0]
    assert " ".join(opening.split()) == " ".join(plaintext.plain_text(FIRST_STATUS_NOTE).split())
    assert done.stdout.rsplit("\n$ dbops status\n", 1)[1].startswith("dbops status: OK")
    # No terminal: every line within 100 columns, progress one plain line per step, no bar, no summary in it.
    assert [line for line in (done.stdout + done.stderr).splitlines() if len(line) > 100] == []
    assert "[#" not in done.stderr and "[." not in done.stderr and "Drill passed" not in done.stderr
