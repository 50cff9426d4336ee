"""README's tables of commands and of migration rules are what the declarations write: a command or a
rule added, changed or removed makes this fail until `python -m bot.frontends.docs --write-docs`."""
from __future__ import annotations

import shutil
from pathlib import Path

from bot.areas import AREAS
from bot.core.registry import Registry
from bot.frontends.docs import main, written_docs
from handlers.migrations.rules import all_rules

ROOT = Path(__file__).resolve().parents[1]
WRITTEN = ("README.md", "dbops.example.toml", ".env.example")


def test_the_readme_is_what_the_declarations_write():
    for path, text in written_docs(ROOT).items():
        assert path.read_text() == text, f"{path.name} is not current: run python -m bot.frontends.docs --write-docs"


def test_every_command_and_every_rule_has_its_row():
    readme = (ROOT / "README.md").read_text()
    for cmd in Registry(AREAS).commands.values():
        assert f"| `{cmd.usage}` |" in readme or cmd.where == "slack", cmd.name
    rules = [rule for rule in all_rules() if f"| `{rule.code}` | {rule.severity.value} |" in readme]
    assert len(rules) == len(all_rules()) > 20


def test_a_stale_table_is_found_and_rewritten(tmp_path, capsys):
    for name in WRITTEN:
        shutil.copy(ROOT / name, tmp_path / name)
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace("| `drop-table` |", "| `drop-tables` |")
                      .replace("| `backup list` |", "| `backup ls` |"))
    assert main(["--root", str(tmp_path)]) == 1
    assert "README.md is not current" in capsys.readouterr().out
    assert main(["--root", str(tmp_path), "--write-docs"]) == 0
    assert main(["--root", str(tmp_path)]) == 0
    assert readme.read_text() == (ROOT / "README.md").read_text()
