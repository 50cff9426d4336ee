"""One subcommand's declaration (`Command`, its `Arg`s) and how its words are read.

`/db help`, `dbops --help` and the argument parsing in Slack and in the terminal are all
generated from these declarations; the `Registry` holds them all.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable

from handlers.errors import UsageError
from handlers.report import Report


@dataclass(frozen=True)
class Arg:
    name: str  # "id" (positional), "--dry-run" (flag/option)
    help: str
    flag: bool = False  # an option without a value
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] | None = None
    type: Callable[[str], Any] = str

    @property
    def positional(self) -> bool:
        return not self.name.startswith("-")

    @property
    def dest(self) -> str:
        return dest(self.name)


def dest(option: str) -> str:
    """Where argparse keeps an argument's value: "--dry-run" -> "dry_run"."""
    return option.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Command:
    name: str  # words, e.g. "backup verify"
    summary: str
    run: Callable[..., Report]  # given the Invocation (bot.core.registry), returns the report
    args: tuple[Arg, ...] = ()
    long_running: bool = False  # runs as a job: queued, progress message, one per (target, lock)
    cancellable: bool = False  # `job cancel N` stops it half-way, removing what it made (it checks inv.cancel)
    lock: str | None = None  # the job family sharing the one-at-a-time rule; default: first word
    who: str = "anyone"  # "anyone" (allowed users) or "approvers": commands that destroy or cost
    open_with: str | None = None  # an approvers-only command's flag that makes it anyone's, e.g. "--dry-run"
    # (option, value): the command is for approvers only when that option has that value, e.g.
    # ("--on", "render") for a drill that bills a Render instance.
    approvers_when: tuple[str, str] | None = None
    # Given the bot's settings: True when they open this approvers-only command to anyone (a setting
    # like backup.recovery_copy_for = "anyone").
    opened_by: Callable[[Any], bool] | None = None
    where: str = "both"  # "both", "cli" or "slack"
    takes_target: bool = True
    needs_state: bool = True  # opens the state store when one is configured
    # With the state database unreachable the command still runs: it does without (`status`), it reads
    # the backup storage instead, or (Slack) it records its approval request on the stand-in (only a
    # request that cannot wait for the state database belongs there: a restore).
    works_without_state: bool = False
    works_from_storage: bool = False
    recorded_on_standin: bool = False
    instant: bool = False  # Slack answers it in the acknowledgement itself, not from a worker (`help`)
    # Slack only: the command opens this form instead of running; given (channel, target), returns the view.
    modal: Callable[[str, str | None], dict] | None = None

    def approver_only(self, args: argparse.Namespace | None, settings: Any = None) -> bool:
        """Whether this invocation (its arguments decide, for `open_with` and `approvers_when`, and the
        settings for `opened_by`) is for approvers only."""
        if self.opened_by is not None and settings is not None and self.opened_by(settings):
            return False
        if self.approvers_when is not None:
            option, value = self.approvers_when
            return args is None or getattr(args, dest(option), None) == value
        if self.who != "approvers":
            return False
        if self.open_with and args is not None:
            return not getattr(args, dest(self.open_with), False)
        return True

    @property
    def runs_degraded(self) -> bool:
        """Whether it runs while the state database is unreachable."""
        return (not self.needs_state or self.works_without_state or self.works_from_storage
                or self.recorded_on_standin)

    @property
    def who_text(self) -> str:
        if self.approvers_when is not None:
            return f" ({' '.join(self.approvers_when)}: approvers only)"
        if self.who != "approvers":
            return ""
        return f" (approvers only, unless {self.open_with})" if self.open_with else " (approvers only)"

    @property
    def lock_kind(self) -> str:
        return self.lock or self.name.split()[0]

    @property
    def usage(self) -> str:
        parts = [self.name]
        for arg in self.args:
            if arg.positional:
                parts.append(f"<{arg.name}>" if arg.required else f"[{arg.name}]")
            elif arg.flag:
                parts.append(f"[{arg.name}]")
            else:
                option = f"{arg.name} {arg.name.lstrip('-').upper()}"
                parts.append(option if arg.required else f"[{option}]")
        return " ".join(parts)


# Commands that destroy or cost must be declared who="approvers"; these families always are.
APPROVERS_ONLY_FAMILIES = ("restore", "role")


def command(name: str, summary: str, *args: Arg, **options: Any) -> Callable[[Callable[..., Report]], Command]:
    """Declares a subcommand: the decorated function is its run function, and the name is bound to the
    `Command` (the area lists it in its `Area`)."""

    def declare(fn: Callable[..., Report]) -> Command:
        cmd = Command(name=name, summary=summary, run=fn, args=tuple(args), **options)
        if name.split()[0] in APPROVERS_ONLY_FAMILIES and cmd.who != "approvers":
            raise RuntimeError(f"command {name!r} changes or restores data: declare it who=\"approvers\"")
        return cmd

    return declare


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argument type: a whole number from low to high, or a usage error saying so."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: give {low} to {high}")
        return value

    parse.__name__ = "whole number"
    return parse


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print and exit
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> None:
        raise UsageError(message or self.format_usage())


def parser_for(cmd: Command, prog: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=f"{prog} {cmd.name}", description=cmd.summary, add_help=False,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for arg in cmd.args:
        if arg.positional:
            parser.add_argument(arg.name, help=arg.help, nargs=None if arg.required else "?",
                                default=arg.default, choices=arg.choices, type=arg.type)
        elif arg.flag:
            parser.add_argument(arg.name, help=arg.help, action="store_true")
        else:
            parser.add_argument(arg.name, help=arg.help, required=arg.required, default=arg.default,
                                choices=arg.choices, type=arg.type)
    # Every command takes --target, so a script can pass it everywhere; an unknown one is refused
    # before the command runs (`check_target`).
    parser.add_argument("--target", help="which database (default: prod)", default=None)
    # "line": one line a finding for CI (migrate check); other commands print it as text.
    parser.add_argument("--format", choices=("text", "json", "line"), default="text", help="output format")
    return parser


def command_help(cmd: Command, prog: str) -> list[tuple[str, str]]:
    """(usage, summary) then (argument, help) rows for one command."""
    rows = [(f"{prog} {cmd.usage}", cmd.summary + (" (approvers only)" if cmd.who == "approvers" else ""))]
    for arg in cmd.args:
        name = arg.name if arg.positional or arg.flag else f"{arg.name} {arg.name.lstrip('-').upper()}"
        extra = f" (one of: {', '.join(arg.choices)})" if arg.choices else ""
        extra += f" (default: {arg.default})" if arg.default not in (None, False) else ""
        rows.append((name, arg.help + extra))
    rows.append(("--target NAME", "which database (default: prod)"))
    rows.append(("--format text|json|line", "output format (line: one line a finding, for CI)"))
    return rows
