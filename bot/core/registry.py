"""What the job areas add to the bot, and the one place that holds it.

Each area (bot.areas) declares one `Area`; the front ends build a `Registry` of them and hand
it to the service, the CLI and the Slack app. Core code reads commands, settings checks,
status lines, start-up hooks, schedules, appliers and forms from the registry it is given,
so it never imports an area.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import shlex
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

from handlers.errors import UsageError
from handlers.report import Note, ProgressFn, Report, no_progress
from handlers.target import Target

from .approvals.book import ApprovalRequest, RequestStatus
from .approvals.identity import identities
from .approvals.settings import ApprovalSettings
from .command import Command, parser_for
from .config import Settings, read_once
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
    # Applying an approved request: raises RequestChanged (bot/core/applier.py) when what is about to
    # run is not what the approval binds; called right before the first change, after ensure_lock.
    ensure_approved: Callable[[], None] = lambda: None

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


def run_instead(inv: Invocation, name: str) -> Report:
    """Runs the command `name` for this invocation: `drill --on render` is `render drill`, declared by
    another area, which this one need not import."""
    found = [c for c in inv.registry.available(inv.front_end) if c.name == name]
    if not found:
        raise UsageError(f"`{name}` is not available here")
    return found[0].run(dataclasses.replace(inv, command=found[0]))


def check_target(inv: Invocation) -> None:
    """An unknown --target is an error naming the known ones, whatever the command."""
    name = getattr(inv.args, "target", None)
    if name is not None:
        inv.settings.target(name)


@dataclass(frozen=True)
class StatusLine:
    """One line of `/db status` (and the digest): `line(inv)` gives (title, ok, text) for inv's target,
    or None when there is nothing to say. The text is a Note when it passes with a warning: the
    renderer marks it (an area never spells the mark)."""

    line: Callable[[Invocation], tuple[str, bool, str | Note] | None]
    per_target: bool = True  # asked once per configured target; else once in all
    restore_targets: bool = False  # asked of a restore target too (one only restored into: no backups expected)


@dataclass(frozen=True)
class Schedule:
    name: str
    slot: Callable[[Bot, datetime], str | None]  # the run due at `now` (e.g. its date), or None
    run: Callable[[Bot], None]
    describe: Callable[[Settings, datetime], str] | None = None  # "daily at 03:00 UTC, next ..." for /db status


@dataclass(frozen=True)
class Form:
    """A Slack form that an area's command opens (`Command.modal`), and what runs, off the request
    path, when it is sent: `submitted(bot, user, view)`. `errors(view)`, when given, is asked first:
    {block_id: message} keeps the form open with each message under its field."""

    callback_id: str
    submitted: Callable[[Bot, str, dict], None]
    errors: Callable[[dict], dict[str, str]] | None = None


SettingsCheck = Callable[[Settings], Any]  # parses its section of dbops.toml; raises ConfigError naming the key
StartupHook = Callable[[Bot], list[str]]  # returns lines to tell the channel


@dataclass
class Applied:
    """How applying an approved request ended: the request's new status, what to tell, the report."""

    status: RequestStatus  # APPLIED, FAILED, or PENDING: an approval was withdrawn before anything ran
    detail: str
    report: Report | None = None  # posted in the request's thread
    refused: bool = False  # nothing ran: what was about to run is not what the approval binds


@dataclass(frozen=True)
class Applier:
    """An area's own work on an approved request of one kind. The lifecycle around it is core's
    (bot/core/applier.py): the claim, the job lock, the status, the one error path, the thread,
    and at start-up the requests a stopped process left `applying`."""

    kind: str  # the request kind, e.g. "restore"
    lock: str  # the job family it runs in: never beside another job of it on the same target
    # The work, given the running bot, the request and the job's Invocation (which it calls
    # `ensure_approved()` on right before its first change); raises DbopsError when it failed.
    apply: Callable[[Bot, ApprovalRequest, Invocation], Applied]
    binds: Callable[[ApprovalRequest], str]  # the SHA-256 an approval binds, recomputed from the request
    # What a request left `applying` by a stopped process became; raises DbopsError when that cannot
    # be told now (it stays `applying` until the next start). None: failed, its effect unknown.
    recover: Callable[[Bot, ApprovalRequest], Applied] | None = None
    per_target: bool = True  # False: one job of the family at a time, whatever the target (restore)


# What a killed process left (a `running` row, a .partial file), made right before each terminal
# command: a setup without a bot has no start-up to do it. Returns lines to tell the person.
CleanupHook = Callable[[Settings, StateStore], list[str]]


@dataclass(frozen=True)
class Area:
    """Everything one job area adds to the bot."""

    name: str
    commands: tuple[Command, ...] = ()
    settings: tuple[tuple[str, SettingsCheck], ...] = ()  # (dbops.toml section, its check)
    status_lines: tuple[StatusLine, ...] = ()
    startup: tuple[StartupHook, ...] = ()
    cleanup: tuple[CleanupHook, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    appliers: tuple[Applier, ...] = ()  # one per request kind the area applies
    forms: tuple[Form, ...] = ()


@read_once
def approval_settings(settings: Settings) -> ApprovalSettings:
    return ApprovalSettings.from_dict(settings.section("approvals"))


# The approval sections belong to core (every kind of request uses them), not to an area.
CORE_SETTINGS: tuple[tuple[str, SettingsCheck], ...] = (
    ("identities", identities),
    ("approvals", approval_settings),
)

HELP_FLAGS = ("--help", "-h")


def _next_words(name: str, commands: dict[str, Command]) -> list[str]:
    """The words that may follow `name` ("" for the first word) in a command's name."""
    depth = len(name.split())
    return sorted({n.split()[depth] for n in commands if len(n.split()) > depth
                   and n.split()[:depth] == name.split()})


def _close_word(typed: str, words: list[str]) -> str | None:
    """The one of `words` that `typed` is a typo of, if any (never a word merely as long)."""
    if typed in words:
        return None
    close = difflib.get_close_matches(typed, words, n=1, cutoff=0.6)
    return close[0] if close else None


class Registry:
    """The areas, joined: every command (looked up by its words), settings check, status line,
    start-up and clean-up hook, schedule, applier and form, in the order the areas are listed."""

    def __init__(self, areas: Iterable[Area]) -> None:
        self.areas = tuple(areas)
        self.commands: dict[str, Command] = {}  # "both:backup", "cli:migrate check", "slack:migrate check"
        for area in self.areas:
            for cmd in area.commands:
                self._add(cmd)
        self.settings_checks = [check for area in self.areas for check in area.settings] + list(CORE_SETTINGS)
        self.status_lines = [line for area in self.areas for line in area.status_lines]
        self.startup_hooks = [hook for area in self.areas for hook in area.startup]
        self.cleanup_hooks = [hook for area in self.areas for hook in area.cleanup]
        self.schedules = [schedule for area in self.areas for schedule in area.schedules]
        self.appliers: dict[str, Applier] = {}
        self.forms: dict[str, Form] = {}
        for area in self.areas:
            for applier in area.appliers:
                if applier.kind in self.appliers:
                    raise RuntimeError(f"two areas apply {applier.kind!r} requests")
                self.appliers[applier.kind] = applier
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

    def works_degraded(self, front_end: str, prefix: str = "") -> str:
        """What runs with the state database unreachable, from the commands' declarations: for the
        refusal in Slack and the health check's warning."""
        runs = [c for c in self.available(front_end) if c.runs_degraded and not c.instant]
        groups = [("", [c for c in runs if not (c.works_from_storage or c.recorded_on_standin)]),
                  ("from the backup storage: ", [c for c in runs if c.works_from_storage]),
                  ("asked for and approved on a stand-in of the state database: ",
                   [c for c in runs if c.recorded_on_standin])]
        return "; ".join(lead + ", ".join(f"`{prefix}{c.name}`" for c in cmds) for lead, cmds in groups if cmds)

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
                rest = words[length:]
                if rest and not rest[0].startswith("-"):  # `backup lst`: a mistyped subcommand, not an argument
                    close = _close_word(rest[0], _next_words(name, commands))
                    if close:
                        raise UsageError(f"unknown subcommand `{name} {rest[0]}`. Did you mean `{name} {close}`? "
                                         f"Try `{prog} help {name.split()[0]}`.")
                return commands[name], rest
        typed = " ".join(w for w in words[:2] if not w.startswith("-")) or "(nothing)"
        first = words[0] if words else ""
        family = _next_words("", commands)
        if first in family and len(typed.split()) == 1:
            raise UsageError(f"`{first}` needs a subcommand: {', '.join(_next_words(first, commands))}. "
                             f"Try `{prog} help {first}`.")
        if first in family:  # `readonly lsit`: the family is right, its subcommand is not
            close = _close_word(typed.split()[-1], _next_words(first, commands))
            close = f"{first} {close}" if close else None
        else:  # `stauts`, `frobnicate`: the first word alone against the first words there are
            close = _close_word(first, family)
        hint = f" Did you mean `{close}`?" if close else ""
        raise UsageError(f"unknown subcommand `{typed}`.{hint} Try `{prog} help`.")
