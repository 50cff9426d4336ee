"""What the job areas add to the bot, and the one place that holds it.

Each area (bot.areas) declares one `Area`; the front ends build a `Registry` of them and hand
it to the service, the CLI and the Slack app. Core code reads commands, settings checks,
status lines, start-up hooks, schedules, appliers and forms from the registry it is given,
so it never imports an area.
"""
from __future__ import annotations

import argparse
import difflib
import shlex
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol

from handlers.errors import UsageError
from handlers.report import ProgressFn, Report, no_progress
from handlers.target import Target

from .approvals.book import ApprovalRequest
from .approvals.identity import identities
from .approvals.settings import ApprovalSettings
from .command import Command, parser_for
from .config import Settings
from .state.store import StateStore

if TYPE_CHECKING:  # the running bot's parts (slack_sdk, a thread pool): only the Slack front end needs them
    from .approvals.reactions import Approvals
    from .notify import Notifier
    from .waiting import WaitingWork
    from .workers import JobRunner


class Bot(Protocol):
    """The running bot as start-up hooks, schedules, appliers and forms see it (`BotService` is one)."""

    settings: Settings
    store: StateStore
    notifier: Notifier
    runner: JobRunner
    waiting: WaitingWork
    approvals: Approvals
    registry: "Registry"

    def recover_orphans(self) -> None: ...

    def run_command(self, cmd: Command, args: argparse.Namespace, actor: str, channel: str | None,
                    user_for_errors: str | None) -> None: ...

    def run_scheduled(self, words: list[str]) -> None: ...

    def post_report(self, report: Report, channel: str | None = None) -> None: ...


@dataclass
class Invocation:
    """Everything a command's run function gets."""

    command: Command
    args: argparse.Namespace
    settings: Settings
    actor: str  # Slack user id, "cli:<user>" or "scheduler"
    registry: "Registry"  # every command, status line and schedule (for help, status and the digest)
    channel: str | None = None
    store: StateStore | None = None  # None: no state database configured, or it is unreachable
    # Where approval requests are recorded: the state store, or its stand-in while that is unreachable.
    requests: StateStore | None = None
    progress: ProgressFn = no_progress
    cancel: threading.Event = field(default_factory=threading.Event)
    front_end: str = "cli"  # "cli" or "slack"
    # Raises when the job lost its lock; called before anything irreversible.
    ensure_lock: Callable[[], None] = lambda: None
    # Whether a Slack user may approve (the running bot's check, user groups included); None in a terminal.
    is_approver: Callable[[str], bool] | None = None

    @property
    def target(self) -> Target:
        return self.settings.target(getattr(self.args, "target", None))

    @property
    def target_name(self) -> str:
        return getattr(self.args, "target", None) or "prod"

    @property
    def command_prefix(self) -> str:
        """How a person types a command here, for messages that name the next one: "/db" or "dbops"."""
        return "/db" if self.front_end == "slack" else "dbops"


def check_target(inv: Invocation) -> None:
    """An unknown --target is an error naming the known ones, whatever the command."""
    name = getattr(inv.args, "target", None)
    if name is not None:
        inv.settings.target(name)


@dataclass(frozen=True)
class StatusLine:
    """One line of `/db status` (and the digest): `line(inv)` gives (title, ok, text) for inv's target."""

    line: Callable[[Invocation], tuple[str, bool, str]]
    per_target: bool = True  # asked once per configured target; else once in all


@dataclass(frozen=True)
class Schedule:
    name: str
    slot: Callable[[Bot, datetime], str | None]  # the run due at `now` (e.g. its date), or None
    run: Callable[[Bot], None]
    describe: Callable[[Settings, datetime], str] | None = None  # "daily at 03:00 UTC, next ..." for /db status


@dataclass(frozen=True)
class Form:
    """A Slack form that an area's command opens (`Command.modal`), and what runs, off the request
    path, when it is sent: `submitted(bot, user, view)`."""

    callback_id: str
    submitted: Callable[[Bot, str, dict], None]


SettingsCheck = Callable[[Settings], Any]  # parses its section of dbops.toml; raises ConfigError naming the key
StartupHook = Callable[[Bot], list[str]]  # returns lines to tell the channel
Applier = Callable[[Bot, ApprovalRequest], None]  # applies an approved request of its kind


@dataclass(frozen=True)
class Area:
    """Everything one job area adds to the bot."""

    name: str
    commands: tuple[Command, ...] = ()
    settings: tuple[tuple[str, SettingsCheck], ...] = ()  # (dbops.toml section, its check)
    status_lines: tuple[StatusLine, ...] = ()
    startup: tuple[StartupHook, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    appliers: Mapping[str, Applier] = field(default_factory=dict)  # request kind -> its applier
    forms: tuple[Form, ...] = ()


# The approval sections belong to core (every kind of request uses them), not to an area.
CORE_SETTINGS: tuple[tuple[str, SettingsCheck], ...] = (
    ("identities", identities),
    ("approvals", lambda settings: ApprovalSettings.from_dict(settings.section("approvals"))),
)

HELP_FLAGS = ("--help", "-h")


class Registry:
    """The areas, joined: every command (looked up by its words), settings check, status line,
    start-up hook, schedule, applier and form, in the order the areas are listed."""

    def __init__(self, areas: Iterable[Area]) -> None:
        self.areas = tuple(areas)
        self.commands: dict[str, Command] = {}  # "both:backup", "cli:migrate check", "slack:migrate check"
        for area in self.areas:
            for cmd in area.commands:
                self._add(cmd)
        self.settings_checks = [check for area in self.areas for check in area.settings] + list(CORE_SETTINGS)
        self.status_lines = [line for area in self.areas for line in area.status_lines]
        self.startup_hooks = [hook for area in self.areas for hook in area.startup]
        self.schedules = [schedule for area in self.areas for schedule in area.schedules]
        self.appliers: dict[str, Applier] = {}
        self.forms: dict[str, Form] = {}
        for area in self.areas:
            for kind, applier in area.appliers.items():
                if kind in self.appliers:
                    raise RuntimeError(f"two areas apply {kind!r} requests")
                self.appliers[kind] = applier
            for form in area.forms:
                if form.callback_id in self.forms:
                    raise RuntimeError(f"two forms share the callback id {form.callback_id!r}")
                self.forms[form.callback_id] = form

    def _add(self, cmd: Command) -> None:
        key = f"{cmd.where}:{cmd.name}"  # one name may have a terminal and a Slack form
        if key in self.commands or f"both:{cmd.name}" in self.commands or (cmd.where == "both" and any(
                k.endswith(f":{cmd.name}") for k in self.commands)):
            raise RuntimeError(f"command {cmd.name!r} declared twice")
        self.commands[key] = cmd

    def available(self, front_end: str) -> list[Command]:
        return [c for c in self.commands.values() if c.where in ("both", front_end)]

    def help_rows(self, front_end: str) -> list[tuple[str, str]]:
        return [(c.usage, c.summary + c.who_text) for c in self.available(front_end)]

    def parse(self, text_or_words: str | list[str], front_end: str,
              prog: str = "dbops") -> tuple[Command, argparse.Namespace]:
        if isinstance(text_or_words, str):
            try:
                words = shlex.split(text_or_words)
            except ValueError as exc:
                raise UsageError(f"cannot read the command: {exc}") from None
        else:
            words = list(text_or_words)
        if not words:
            words = ["help"]
        helped = self._parse_help(words, front_end, prog)
        if helped is not None:
            return helped
        cmd, rest = self.resolve(words, front_end, prog)
        return cmd, parser_for(cmd, prog).parse_args(rest)

    def _parse_help(self, words: list[str], front_end: str, prog: str) -> tuple[Command, argparse.Namespace] | None:
        """`X --help` and `help X` both mean: the help of command (or command family) X."""
        if words[:1] == ["help"]:
            topic = [w for w in words[1:] if w not in HELP_FLAGS and not w.startswith("--")]
        elif any(w in HELP_FLAGS for w in words):
            topic = [w for w in words if w not in HELP_FLAGS and not w.startswith("-")]
        else:
            return None
        name = None
        if topic:
            family = {c.name.split()[0] for c in self.available(front_end)}
            if len(topic) == 1 and topic[0] in family:
                name = topic[0]
            else:
                name = self.resolve(topic, front_end, prog)[0].name
        fmt = "json" if "json" in words and "--format" in words else "text"
        helper = {c.name: c for c in self.available(front_end)}["help"]
        return helper, argparse.Namespace(topic=name, format=fmt, target=None)

    def resolve(self, words: list[str], front_end: str, prog: str = "dbops") -> tuple[Command, list[str]]:
        """Find the longest declared command the words start with; the rest are its arguments."""
        commands = {c.name: c for c in self.available(front_end)}
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
