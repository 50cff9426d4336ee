"""The one list of subcommands. `/db help`, `dbops --help`, argument parsing in
Slack and in the terminal are all generated from these declarations."""
from __future__ import annotations

import argparse
import difflib
import shlex
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from handlers.errors import UsageError
from handlers.report import ProgressFn, Report, no_progress

if TYPE_CHECKING:
    from handlers.target import Target

    from .config import Settings


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


@dataclass(frozen=True)
class Command:
    name: str  # words, e.g. "backup verify"
    summary: str
    run: Callable[["Invocation"], Report]
    args: tuple[Arg, ...] = ()
    long_running: bool = False  # runs as a job: queued, progress message, one per (target, lock)
    lock: str | None = None  # the job family sharing the one-at-a-time rule; default: first word
    who: str = "anyone"  # "anyone" (allowed users) or "approvers": commands that destroy or cost
    open_with: str | None = None  # an approvers-only command's flag that makes it anyone's, e.g. "--dry-run"
    where: str = "both"  # "both", "cli" or "slack"
    takes_target: bool = True
    needs_state: bool = True  # opens the state store when one is configured
    modal: str | None = None  # Slack only: the command opens this form instead of running

    def approver_only(self, args: argparse.Namespace | None) -> bool:
        """Whether this invocation (its arguments decide, for `open_with`) is for approvers only."""
        if self.who != "approvers":
            return False
        if self.open_with and args is not None:
            return not getattr(args, self.open_with.lstrip("-").replace("-", "_"), False)
        return True

    @property
    def who_text(self) -> str:
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


@dataclass
class Invocation:
    """Everything a command's run function gets."""

    command: Command
    args: argparse.Namespace
    settings: "Settings"
    actor: str  # Slack user id, "cli:<user>" or "scheduler"
    channel: str | None = None
    state: Any = None  # StateStore or None (no state database configured)
    progress: ProgressFn = no_progress
    cancel: threading.Event = field(default_factory=threading.Event)
    front_end: str = "cli"  # "cli" or "slack"
    # Raises when the job lost its lock; called before anything irreversible.
    ensure_lock: Callable[[], None] = lambda: None

    @property
    def target(self) -> "Target":
        return self.settings.target(getattr(self.args, "target", None))

    @property
    def target_name(self) -> str:
        return getattr(self.args, "target", None) or "prod"


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


COMMANDS: dict[str, Command] = {}

# Commands that destroy or cost must be declared who="approvers"; these families always are.
APPROVERS_ONLY_FAMILIES = ("restore", "role")


def command(name: str, summary: str, *args: Arg, **options: Any) -> Callable:
    """Declare a subcommand; the decorated function is its run function."""

    def register(fn: Callable[[Invocation], Report]) -> Callable[[Invocation], Report]:
        cmd = Command(name=name, summary=summary, run=fn, args=tuple(args), **options)
        if name.split()[0] in APPROVERS_ONLY_FAMILIES and cmd.who != "approvers":
            raise RuntimeError(f"command {name!r} changes or restores data: declare it who=\"approvers\"")
        key = f"{cmd.where}:{name}"  # one name may have a terminal and a Slack form
        if key in COMMANDS or f"both:{name}" in COMMANDS or (cmd.where == "both" and any(
                k.endswith(f":{name}") for k in COMMANDS)):
            raise RuntimeError(f"command {name!r} declared twice")
        COMMANDS[key] = cmd
        return fn

    return register


def available(front_end: str) -> list[Command]:
    return [c for c in COMMANDS.values() if c.where in ("both", front_end)]


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
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    return parser


HELP_FLAGS = ("--help", "-h")


def parse_help(words: list[str], front_end: str, prog: str) -> tuple[Command, argparse.Namespace] | None:
    """`X --help` and `help X` both mean: the help of command (or command family) X."""
    if words[:1] == ["help"]:
        topic = [w for w in words[1:] if w not in HELP_FLAGS and not w.startswith("--")]
    elif any(w in HELP_FLAGS for w in words):
        topic = [w for w in words if w not in HELP_FLAGS and not w.startswith("-")]
    else:
        return None
    name = None
    if topic:
        family = {c.name.split()[0] for c in available(front_end)}
        if len(topic) == 1 and topic[0] in family:
            name = topic[0]
        else:
            name = resolve(topic, front_end, prog)[0].name
    fmt = "json" if "json" in words and "--format" in words else "text"
    helper = {c.name: c for c in available(front_end)}["help"]
    return helper, argparse.Namespace(topic=name, format=fmt, target=None)


def command_help(cmd: Command, prog: str) -> list[tuple[str, str]]:
    """(usage, summary) then (argument, help) rows for one command."""
    rows = [(f"{prog} {cmd.usage}", cmd.summary + (" (approvers only)" if cmd.who == "approvers" else ""))]
    for arg in cmd.args:
        name = arg.name if arg.positional or arg.flag else f"{arg.name} {arg.name.lstrip('-').upper()}"
        extra = f" (one of: {', '.join(arg.choices)})" if arg.choices else ""
        extra += f" (default: {arg.default})" if arg.default not in (None, False) else ""
        rows.append((name, arg.help + extra))
    rows.append(("--target NAME", "which database (default: prod)"))
    rows.append(("--format text|json", "output format"))
    return rows


def resolve(words: list[str], front_end: str, prog: str = "dbops") -> tuple[Command, list[str]]:
    """Find the longest declared command the words start with; the rest are its arguments."""
    commands = {c.name: c for c in available(front_end)}
    for length in range(min(3, len(words)), 0, -1):
        name = " ".join(words[:length])
        if name in commands:
            return commands[name], words[length:]
    typed = " ".join(w for w in words[:2] if not w.startswith("-")) or "(nothing)"
    candidates = list(commands) + sorted({n.split()[0] for n in commands})
    close = difflib.get_close_matches(typed, candidates, n=1, cutoff=0.5) or \
        difflib.get_close_matches(words[0] if words else "", candidates, n=1, cutoff=0.5)
    hint = f" Did you mean `{close[0]}`?" if close else ""
    raise UsageError(f"unknown subcommand `{typed}`.{hint} Try `{prog} help`.")


def parse(text_or_words: str | list[str], front_end: str, prog: str = "dbops") -> tuple[Command, argparse.Namespace]:
    if isinstance(text_or_words, str):
        try:
            words = shlex.split(text_or_words)
        except ValueError as exc:
            raise UsageError(f"cannot read the command: {exc}") from None
    else:
        words = list(text_or_words)
    if not words:
        words = ["help"]
    helped = parse_help(words, front_end, prog)
    if helped is not None:
        return helped
    cmd, rest = resolve(words, front_end, prog)
    return cmd, parser_for(cmd, prog).parse_args(rest)


def check_target(inv: Invocation) -> None:
    """An unknown --target is an error naming the known ones, whatever the command."""
    name = getattr(inv.args, "target", None)
    if name is not None:
        inv.settings.target(name)


def help_rows(front_end: str) -> list[tuple[str, str]]:
    return [(c.usage, c.summary + c.who_text) for c in available(front_end)]
