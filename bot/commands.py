"""Every subcommand, declared once. Each is a short function that delegates to a handler."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from handlers.errors import DbopsError
from handlers.report import Outcome, Report, Section, Table

from .registry import Invocation, command, help_rows


@command("help", "list the commands", takes_target=False, needs_state=False)
def help_command(inv: Invocation) -> Report:
    rows = help_rows(inv.front_end)
    prefix = "/db" if inv.front_end == "slack" else "dbops"
    return Report(title="dbops commands", summary=f"{len(rows)} commands; add --target NAME for another database",
                  sections=[Section("Commands", table=Table(["command", "what it does"],
                                                            [[f"{prefix} {u}", s] for u, s in rows]))])


def _probe(target) -> tuple[str, bool, str]:
    try:
        with target.connect(connect_timeout=5) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        return target.name, True, f"PostgreSQL {version}"
    except DbopsError as exc:
        return target.name, False, str(exc)


def target_reachability(settings) -> list[tuple[str, bool, str]]:
    targets = list(settings.targets.values())
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
        return list(pool.map(_probe, targets))


@command("status", "targets and their reachability, running jobs, last backup and drill, pending approvals",
         takes_target=False)
def status_command(inv: Invocation) -> Report:
    inv.settings.target()  # no target at all is a configuration error, not "all good"
    probes = target_reachability(inv.settings)
    sections = [Section("Targets", table=Table(
        ["target", "at", "reachable", "detail"],
        [[name, inv.settings.targets[name].label, "yes" if ok else "NO", detail] for name, ok, detail in probes]))]
    problems = sum(1 for _, ok, _ in probes if not ok)
    if inv.state is not None:
        jobs = inv.state.running_jobs()
        sections.append(Section("Running jobs", table=Table(
            ["job", "command", "target", "started by", "started"],
            [[f"#{j.id}", j.command, j.target, j.requested_by, j.started_at] for j in jobs])))
    for line_fn in STATUS_LINES:
        title, ok, line = line_fn(inv)
        problems += 0 if ok else 1
        sections.append(Section(title, text=("" if ok else ":warning: ") + line))
    from datetime import datetime, timezone

    from .scheduler import SCHEDULES

    now = datetime.now(timezone.utc)
    sections.append(Section("Scheduled runs", text="\n".join(s.describe(inv.settings, now) for s in SCHEDULES
                                                             if s.describe)))
    summary = "all good" if problems == 0 else f"{problems} problem{'s' if problems != 1 else ''}"
    return Report(title="dbops status", summary=summary, sections=sections,
                  outcome=Outcome.OK if problems == 0 else Outcome.FAILED,
                  data={"targets": [{"name": n, "reachable": ok, "detail": d} for n, ok, d in probes]})


# Later areas (backups, drills, approvals, schedules) add (title, ok, line) providers here.
STATUS_LINES: list = []
