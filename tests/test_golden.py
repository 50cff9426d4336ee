"""The terminal text of a few commands, exactly, at 80 and 100 columns (tests/golden/).

A change to how reports read in a terminal shows up here as a diff to review. After a deliberate
change, write the files again with:

    DBOPS_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py -q
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
EXAMPLES = "examples/migrations"

CASES = {
    "help": ["help"],
    "migrate-check-drop-pinned": ["migrate", "check", f"{EXAMPLES}/drop_pinned.up.sql"],
    "migrate-check-drop-pinned-with-down": ["migrate", "check", f"{EXAMPLES}/drop_pinned.up.sql",
                                            "--down", f"{EXAMPLES}/drop_pinned.down.sql"],
    "migrate-check-add-archived-flag": ["migrate", "check", f"{EXAMPLES}/add_archived_flag.up.sql",
                                        "--down", f"{EXAMPLES}/add_archived_flag.down.sql"],
    "migrate-check-drop-pinned-line": ["migrate", "check", f"{EXAMPLES}/drop_pinned.up.sql", "--format", "line"],
}


def dbops(args: list[str], columns: int) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOPS_", "DATABASE_URL", "SLACK_"))}
    env |= {"PYTHONPATH": str(ROOT), "DBOPS_DOTENV": "/nonexistent/.env", "COLUMNS": str(columns)}
    done = subprocess.run([sys.executable, "-m", "bot.frontends.cli", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)
    assert done.returncode in (0, 3), done.stderr  # 3: the example that needs approval
    return done.stdout


@pytest.mark.parametrize("columns", [80, 100])
@pytest.mark.parametrize("name", sorted(CASES))
def test_terminal_text_matches_golden_file(name, columns):
    shown = dbops(CASES[name], columns)
    golden = GOLDEN / f"{name}.{columns}.txt"
    if os.environ.get("DBOPS_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(shown)
    assert shown == golden.read_text(), f"{golden.name} differs; see the docstring to regenerate it"
    assert all(len(line) <= columns for line in shown.splitlines()) or name.endswith("-line")
