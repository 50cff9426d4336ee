"""The whole repository passes `ruff check` with the configuration in pyproject.toml ([tool.ruff]:
line length 120, pycodestyle errors and warnings, pyflakes, sorted imports), so the README's one
test command, which CI runs, also keeps the code clean."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing_in_the_repository():
    pytest.importorskip("ruff", reason="ruff is not installed: `pip install -e \".[test]\"` installs it")
    # --no-cache: a test run writes nothing into the work tree.
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    clean = done.returncode == 0
    assert clean, f"ruff check found problems:\n{done.stdout}{done.stderr}"
