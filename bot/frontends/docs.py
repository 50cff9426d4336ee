"""`python -m bot.frontends.docs --write-docs`: every generated part of the documentation, written from
the declarations: README's table of commands (the registry of `bot/areas/`) and of migration rules
(`handlers/migrations/rules/`), with what `python -m bot.core.config --write-docs` writes (the
settings' and the environment variables' tables, dbops.example.toml, .env.example). Without
--write-docs it exits 1 while any of them is stale (tests/test_readme_generated.py)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from handlers.errors import ConfigError

from ..areas import AREAS
from ..core import config
from ..core.registry import Registry

MARKERS = {"commands": ("<!-- commands:start -->", "<!-- commands:end -->"),
           "rules": ("<!-- rules:start -->", "<!-- rules:end -->")}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def commands_table(registry: Registry) -> str:
    """One row a command, in the order `help` lists them; a command whose Slack form differs from the
    terminal's (a form, an approval request) says so in its row."""
    rows, seen = [], set()
    for cmd in registry.commands.values():
        if cmd.name in seen:
            continue
        seen.add(cmd.name)
        variants = {c.where: c for c in registry.commands.values() if c.name == cmd.name}
        main = variants.get("both") or variants.get("cli") or variants["slack"]
        what = main.summary + main.who_text
        if main.where == "cli" and "slack" in variants:
            slack = variants["slack"]
            what += f"; in Slack: {slack.summary}" + (slack.who_text if slack.who_text != main.who_text else "")
        elif main.where != "both":
            what += " (terminal only)" if main.where == "cli" else " (Slack only)"
        rows.append(f"| `{_cell(main.usage)}` | {_cell(what)} |")
    return "| command | what it does |\n|---|---|\n" + "\n".join(rows) + "\n"


def rules_table() -> str:
    """Every rule of `migrate check`, forbidden ones first: a forbidden finding waits for an approval."""
    from handlers.migrations.model import Severity
    from handlers.migrations.rules import all_rules

    order = {Severity.FORBIDDEN: 0, Severity.WARNING: 1, Severity.INFO: 2}
    rows = [f"| `{rule.code}` | {rule.severity.value} | {_cell(rule.summary)} |"
            for rule in sorted(all_rules(), key=lambda r: (order.get(r.severity, 3), r.code))]
    return "| rule | severity | what it guards against |\n|---|---|---|\n" + "\n".join(rows) + "\n"


def _fill(text: str, name: str, table: str, path: Path) -> str:
    start, end = MARKERS[name]
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ConfigError(f"{path} needs one {start} ... {end} pair of markers for the {name} table")
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{table}{end}{rest.split(end, 1)[1]}"


def written_docs(root: Path) -> dict[Path, str]:
    """What every generated file holds when it is current."""
    docs = config.written_docs(root)
    readme = root / "README.md"
    text = _fill(docs[readme], "commands", commands_table(Registry(AREAS)), readme)
    docs[readme] = _fill(text, "rules", rules_table(), readme)
    return docs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.frontends.docs", description=(
        "write the generated parts of the documentation (README's tables, dbops.example.toml, .env.example) "
        "from the declarations"))
    parser.add_argument("--write-docs", action="store_true", help="rewrite the files that are not current")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    args = parser.parse_args(argv)
    stale = {path: text for path, text in written_docs(args.root).items() if path.read_text() != text}
    for path, text in stale.items():
        if args.write_docs:
            path.write_text(text)
            print(f"wrote {path}")
        else:
            print(f"{path} is not current: run python -m bot.frontends.docs --write-docs")
    return 1 if stale and not args.write_docs else 0


if __name__ == "__main__":
    sys.exit(main())
