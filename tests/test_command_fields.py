"""What a command does without the state database is said by its declaration (Command fields, never
attributes on its function or tests of its name), and what the bot says about it is made from those
fields: the Slack refusal and the health check's warning. A section of dbops.toml is read once."""
from __future__ import annotations

import ast
from pathlib import Path

from bot.areas import AREAS
from bot.areas.drill import drill_settings
from bot.core.command import command
from bot.core.config import Settings
from bot.core.registry import Area, Registry
from handlers import drill
from handlers.report import Report

ROOT = Path(__file__).resolve().parents[1]


def test_the_commands_that_run_degraded_are_said_from_their_declarations():
    said = Registry(AREAS).works_degraded("slack", "/db ")
    for name in ("status", "backup list", "backup info", "backup verify", "drill", "restore", "backup schedule"):
        assert f"`/db {name}`" in said, name
    for name in ("indexes", "digest", "migrate status", "readonly create", "help"):
        assert f"`/db {name}`" not in said, name
    assert said.index("from the backup storage") < said.index("`/db backup list`")
    assert said.index("stand-in") < said.index("`/db restore`")


def test_a_new_command_that_reads_the_storage_is_listed_without_touching_the_front_ends():
    @command("backup census", "count the backups in storage", works_from_storage=True)
    def census(inv) -> Report:
        return Report(title="census", summary="")

    @command("backup audit", "needs the state store")
    def audit(inv) -> Report:
        return Report(title="audit", summary="")

    said = Registry([*AREAS, Area("extra", commands=(census, audit))]).works_degraded("slack")
    assert "`backup census`" in said and "`backup audit`" not in said


def test_no_front_end_or_core_module_reads_a_commands_function_attributes_or_tests_its_name():
    found = []
    for path in [*(ROOT / "bot" / "core").rglob("*.py"), *(ROOT / "bot" / "frontends").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                    and isinstance(node.args[0], ast.Attribute) and node.args[0].attr == "run":
                found.append(f"{path.name}:{node.lineno} getattr(....run, ...)")
            if isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute) and node.left.attr == "name" \
                    and isinstance(node.left.value, ast.Name) and node.left.value.id == "cmd" \
                    and any(isinstance(n, ast.Constant) for c in node.comparators for n in ast.walk(c)):
                found.append(f"{path.name}:{node.lineno} tests cmd.name against a name")
    assert found == []


def test_the_drill_section_is_read_once_not_at_every_scheduler_tick(monkeypatch):
    settings = Settings(targets={}, state_url=None, sections={"drill": {"schedule": "weekly sunday 04:00"}})
    parsed = []
    real = drill.DrillSettings.from_dict
    monkeypatch.setattr(drill.DrillSettings, "from_dict", lambda section: parsed.append(1) or real(section))
    first = drill_settings(settings)
    assert drill_settings(settings) is first and drill_settings(settings) is first
    assert len(parsed) == 1
    other = Settings(targets={}, state_url=None, sections={})  # another Settings reads its own
    assert drill_settings(other) is not first and len(parsed) == 2
