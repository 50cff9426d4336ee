"""The import contract of bot/ and handlers/: layers frontends > areas > core > handlers, nothing
imports upward, and no two modules import each other, however indirectly.

Every import counts: module level, inside functions, and under `if TYPE_CHECKING:`, because
each of them ties the two modules together for a reader, even when Python defers it."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lower number: lower layer. `bot` itself (the package's __init__) holds only the version.
LAYERS = (("handlers", 0), ("bot.core", 1), ("bot.areas", 2), ("bot.frontends", 3), ("bot.__main__", 3))
LAYER_NAMES = {0: "handlers", 1: "bot.core", 2: "bot.areas", 3: "bot.frontends"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for top in ("bot", "handlers") for p in sorted((ROOT / top).rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules one module imports, wherever in the file the import statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod.
            targets = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in known else stem for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def layer(name: str) -> int | None:
    for prefix, number in LAYERS:
        if name == prefix or name.startswith(prefix + "."):
            return number
    return None


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imported(name, path, set(modules)) for name, path in modules.items()}


def test_every_module_has_a_layer():
    assert [name for name in graph() if name != "bot" and layer(name) is None] == []


def test_the_package_itself_imports_nothing_of_the_project():
    assert graph()["bot"] == set()


def test_nothing_imports_a_higher_layer():
    upward = sorted(f"{name} ({LAYER_NAMES[layer(name)]}) imports {target} ({LAYER_NAMES[layer(target)]})"
                    for name, targets in graph().items() if name != "bot"
                    for target in targets if target != "bot" and layer(target) > layer(name))
    assert upward == []


def test_core_never_imports_an_area():
    assert sorted((name, target) for name, targets in graph().items() if name.startswith("bot.core")
                  for target in targets if target.startswith("bot.areas")) == []


def test_no_modules_import_each_other_in_a_circle():
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert circles == []


def test_the_contract_sees_function_level_and_type_checking_imports(tmp_path):
    """The walk itself: an import hidden in a function or under TYPE_CHECKING is still an edge."""
    (tmp_path / "bot" / "core").mkdir(parents=True)
    hidden = tmp_path / "bot" / "core" / "hidden.py"
    hidden.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..areas import backup\n"
                      "def f():\n    from ..frontends.cli import main\n    from . import jobs\n")
    known = {"bot.core.hidden", "bot.areas", "bot.areas.backup", "bot.frontends.cli", "bot.core.jobs"}
    assert imported("bot.core.hidden", hidden, known) == {"bot.areas.backup", "bot.frontends.cli", "bot.core.jobs"}


def test_each_area_module_declares_one_area():
    from bot.areas import AREAS
    from bot.core.registry import Area

    assert all(isinstance(area, Area) for area in AREAS)
    assert len({area.name for area in AREAS}) == len(AREAS)


def declared_commands(path: Path) -> list[str]:
    """The names a module binds to a command it declares: `@command(...)` over a function, or
    `name = command(...)(run)`; imported commands are not its declarations."""
    def declares(call: ast.AST) -> bool:
        while isinstance(call, ast.Call):
            if isinstance(call.func, ast.Name) and call.func.id == "command":
                return True
            call = call.func
        return False

    found = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef) and any(declares(d) for d in node.decorator_list):
            found.append(node.name)
        elif isinstance(node, ast.Assign) and declares(node.value):
            found += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return found


def test_every_command_declared_in_an_area_is_listed_in_its_area():
    """A command declared and not listed is not a command: `dbops drill last` once ran `drill` with a
    backup id "last" because `drill last` was left out of the drill area's list."""
    import importlib

    from bot.core.command import Command

    forgotten, seen = [], 0
    for path in sorted((ROOT / "bot" / "areas").rglob("*.py")):
        name = module_name(path)
        if name == "bot.areas":
            continue
        area = importlib.import_module(".".join(name.split(".")[:3])).AREA  # bot.areas.<area>
        module = importlib.import_module(name)
        for attr in declared_commands(path):
            cmd = getattr(module, attr)
            assert isinstance(cmd, Command), f"{name}.{attr}"
            seen += 1
            if cmd not in area.commands:
                forgotten.append(f"{name}.{attr} (`{cmd.name}`) is not in {area.name}'s AREA")
    assert forgotten == [] and seen > 30
