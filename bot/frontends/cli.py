"""`dbops`: the same subcommands as `/db`, from a terminal or CI.

Exit codes: 0 ok, 1 a check failed, 2 usage or input error, 3 approval required.
"""
from __future__ import annotations

import getpass
import json
import logging
import sys
import textwrap
import time

from handlers.errors import ConfigError, DbopsError, TargetUnreachable
from handlers.report import Progress
from handlers.target import scrub

from .. import __version__
from ..areas import AREAS
from ..core import jobs, output, plaintext
from ..core.config import load_settings, prepare_folders
from ..core.logs import setup_logging
from ..core.registry import Invocation, Registry
from ..core.state.store import StateStore

log = logging.getLogger("dbops.cli")


class TerminalProgress:
    """A progress line on stderr: redrawn in place on a terminal; otherwise (a CI log, a file) one
    plain line per step, without a bar, wrapped to $COLUMNS. The last tick ("done", whose detail may
    be the whole summary) is not shown: the report that follows says it, once."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr  # looked up now, not at import: stderr may have been replaced
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self.last_phase: str | None = None
        self.last_draw = 0.0
        self.width = plaintext.terminal_width()

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if self.tty:
            if now - self.last_draw >= 0.2 or progress.phase != self.last_phase:
                line = output.progress_line(progress, now - self.started)
                self.stream.write("\r\033[K" + line[:self.width - 1])
                self.stream.flush()
                self.last_draw = now
        elif progress.phase != self.last_phase and progress.phase != "done":
            line = progress_plain(progress, now - self.started)
            self.stream.write("\n".join(plaintext.wrap(line, self.width)) + "\n")
            self.stream.flush()
        self.last_phase = progress.phase

    def done(self) -> None:
        """Clears the progress line, so what is printed next starts at the beginning of a line;
        the next progress tick draws it again."""
        if self.tty and self.last_phase is not None:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.last_phase = None


def progress_plain(progress: Progress, elapsed: float) -> str:
    """A step as one plain line, for a log or a file: no bar, no redrawing; the detail once (a step's
    detail that starts with its own name does not say it twice)."""
    detail = plaintext.plain_line(progress.detail)
    if detail.startswith(f"{progress.phase}:"):
        detail = detail[len(progress.phase) + 1:].strip()
    return f"{progress.phase}{': ' + detail if detail else ''} ({elapsed:.0f}s)"


def help_text(registry: Registry, width: int | None = None) -> str:
    """`dbops help`: every command and what it does, wrapped to the terminal."""
    width = width or plaintext.terminal_width()
    rows = [(f"dbops {u}", s) for u, s in registry.help_rows("cli")]
    lines = ["usage: dbops <subcommand> [args] [--target NAME] [--format text|json|line]", ""]
    usage_width = min(max(len(u) for u, _ in rows), max(20, width * 3 // 10))
    for usage, summary in rows:
        if len(usage) > usage_width:  # a long usage gets a line of its own, its summary under it
            lines += plaintext.wrap(usage, width)
            lines += textwrap.wrap(summary, width, initial_indent=" " * 4, subsequent_indent=" " * 4)
            continue
        indent = " " * (usage_width + 2)
        wrapped = textwrap.wrap(summary, max(20, width - len(indent)), break_on_hyphens=False) or [""]
        lines.append(usage.ljust(usage_width + 2) + wrapped[0])
        lines += [indent + more for more in wrapped[1:]]
    lines += ["", "`dbops help COMMAND` or `dbops COMMAND --help` explains one command.",
              "Exit codes: 0 ok, 1 a check failed, 2 usage or input error, 3 approval required."]
    return "\n".join(line for text in lines for line in (plaintext.fit(text, width) or [""])) + "\n"


def error_text(message: str, width: int | None = None) -> str:
    """An error for stderr: "error: ..." without Slack's markup (messages are written once, for both
    front ends), wrapped to the terminal; argparse's own "usage: ..." text stays as it is."""
    if message.startswith("usage:"):
        return message
    width = width or plaintext.terminal_width()
    lines = []
    for n, line in enumerate(plaintext.plain_text(message).splitlines() or [""]):
        lead = "error: " if n == 0 else "       "
        lines += textwrap.wrap(line, width, initial_indent=lead, subsequent_indent=" " * len(lead),
                               break_on_hyphens=False) or [lead.rstrip()]
    return "\n".join(lines)


def clean_up_after_kills(registry: Registry, settings, store: StateStore) -> list[str]:
    """What a killed process left, made right before a terminal command, as the bot does at its
    start-up: a setup without a bot has no start-up, and its `running` rows and `.partial` files
    would stay for good. A clean-up that fails is logged and the command runs anyway."""
    lines = []
    for job in store.orphaned_jobs():
        store.audit("cli", "recover", "failed", subcommand=job.command, target=job.target,
                    detail=f"job #{job.id} marked failed: its process stopped")
        lines.append(f"job #{job.id} `{job.command}` on `{job.target}` marked failed: its process stopped")
    for hook in registry.cleanup_hooks:
        try:
            lines += hook(settings, store)
        except Exception:  # noqa: BLE001 -- the command the person asked for matters more
            log.warning("clean-up %s failed", getattr(hook, "__name__", hook), exc_info=True)
    return lines


def print_help(registry: Registry) -> None:
    print(help_text(registry), end="")


def _wants_json(argv: list[str]) -> bool:
    return any(a == "--format=json" for a in argv) or any(
        a == "--format" and b == "json" for a, b in zip(argv, argv[1:]))


def main(argv: list[str] | None = None) -> int:
    registry = Registry(AREAS)
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv in (["-h"], ["--help"], ["help"]):
        print_help(registry)
        return 0
    if argv[0] == "--version":
        print(f"dbops {__version__}")
        return 0
    settings = store = None
    try:
        cmd, args = registry.parse(argv, "cli")
        settings = load_settings(checks=registry.settings_checks)
        try:  # TMPDIR only: a command in a shell on Render must not fill the small root disk
            prepare_folders()
        except ConfigError as exc:  # e.g. Render's build, before the disk is mounted: said, and not fatal here
            print(f"dbops: warning: {exc}; temporary files go to the system's default folder", file=sys.stderr)
        setup_logging(settings.secrets(), level="WARNING")
        if getattr(args, "target", None):
            settings.target(args.target)  # an unknown target is named before anything is opened
        if cmd.needs_state and settings.state_url:
            try:
                store = StateStore(settings.state_url, max_size=4, named=settings.state_url_env)
            except TargetUnreachable:
                # The night production (and the state store on it) is gone: the commands that can
                # read the backup storage instead run without it and say so.
                if not cmd.runs_degraded:
                    raise
        if store is not None:
            for line in clean_up_after_kills(registry, settings, store):
                print(f"dbops: {plaintext.plain_text(scrub(line, settings.secrets()))}", file=sys.stderr)
        progress = TerminalProgress()
        inv = Invocation(command=cmd, args=args, settings=settings, actor=f"cli:{getpass.getuser()}",
                         registry=registry, store=store, progress=progress, front_end="cli")
        try:
            report = jobs.run(inv, store)
        finally:
            progress.done()
        print(output.to_format(report, args.format), end="")
        return report.outcome.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except DbopsError as exc:
        text = str(exc)
        if settings is not None:
            text = scrub(text, settings.secrets())
        if _wants_json(argv):
            print(json.dumps({"error": plaintext.plain_text(text), "exit_code": exc.exit_code}))
        print(error_text(text), file=sys.stderr)
        return exc.exit_code
    finally:
        if store is not None:
            store.close()


if __name__ == "__main__":
    sys.exit(main())
