"""`help` and `status`: what every area declared, read from the registry the invocation carries."""
from __future__ import annotations

import argparse
import dataclasses
from datetime import datetime, timezone

from handlers.errors import UsageError
from handlers.report import Level, Note, Outcome, Report, Section, Table

from ..core import jobs
from ..core.command import Arg, command, command_help
from ..core.reachability import target_reachability
from ..core.registry import Area, Invocation


@command("help", "list the commands, or explain one (`help backup`, `backup --help`)",
         Arg("topic", "a command or a family of commands, e.g. backup or \"migrate check\""),
         takes_target=False, needs_state=False, instant=True)
def help_command(inv: Invocation) -> Report:
    prefix = inv.command_prefix
    topic = getattr(inv.args, "topic", None)
    if topic:
        chosen = [c for c in inv.registry.available(inv.front_end) if c.name == topic or c.name.startswith(topic + " ")]
        if not chosen:
            raise UsageError(f"no command `{topic}`; `{prefix} help` lists them")
        sections = [Section(f"{prefix} {c.name}", table=Table(["usage", "what it does"],
                                                              [list(r) for r in command_help(c, prefix)]))
                    for c in chosen]
        return Report(title=f"dbops help: {topic}", summary=chosen[0].summary, sections=sections, verdict=False,
                      data={"commands": [{"usage": c.usage, "summary": c.summary} for c in chosen]})
    rows = inv.registry.help_rows(inv.front_end)
    return Report(title="dbops commands", summary=f"{len(rows)} commands; add --target NAME for another database",
                  verdict=False,
                  sections=[Section("Commands", table=Table(["command", "what it does"],
                                                            [[f"{prefix} {u}", s] for u, s in rows]))],
                  data={"commands": [{"usage": u, "summary": s} for u, s in rows]})


def for_target(inv: Invocation, name: str) -> Invocation:
    return dataclasses.replace(inv, args=argparse.Namespace(**{**vars(inv.args), "target": name}))


@command("status", "targets and their reachability, running jobs, the newest backup and drill of each target, "
                   "pending approvals, schedules", takes_target=False, works_without_state=True)
def status_command(inv: Invocation) -> Report:
    inv.settings.target(getattr(inv.args, "target", None))  # no target at all is a configuration error
    only = getattr(inv.args, "target", None)
    probes = [p for p in target_reachability(inv.settings) if only is None or p[0] == only]
    # A problem is said once, in Problems, listed first: the table and the sections keep the rest.
    restore_only = " (restore target)"
    sections = [Section("Targets", table=Table(
        ["target", "at", "reachable", "detail"],
        [[name, inv.settings.targets[name].label, "yes" if ok else "NO",
          (detail + (restore_only if inv.settings.is_restore_target(name) else "")) if ok else "see Problems"]
         for name, ok, detail in probes]))]
    problems = [detail if f"`{name}`" in detail else f"target `{name}` is unreachable: {detail}"
                for name, ok, detail in probes if not ok]
    data: dict = {"targets": [{"name": n, "reachable": ok, "detail": d} for n, ok, d in probes]}
    if inv.store is not None:
        running = inv.store.running_jobs()
        sections.append(Section("Running jobs", table=Table(
            ["job", "command", "target", "started by", "started"],
            [[f"#{j.id}", j.command, j.target, j.requested_by, j.started_at] for j in running])))
        data["running_jobs"] = [{"id": j.id, "command": j.command, "target": j.target, "requested_by": j.requested_by,
                                 "started_at": j.started_at.isoformat() if j.started_at else None} for j in running]
    data["checks"] = []
    for provider in inv.registry.status_lines:
        # A restore target is only restored into: no backups, drills or roles are expected of it.
        watched = [n for n in ([only] if only else inv.settings.targets)
                   if provider.restore_targets or n in inv.settings.watched_targets]
        names = watched if provider.per_target else [None]
        for name in names:
            said = provider.line(for_target(inv, name) if name else inv)
            if said is None:
                continue
            title, ok, line = said
            note = line if isinstance(line, Note) else Note(Level.INFO if ok else Level.FAILED, line)
            if name and len(inv.settings.watched_targets) > 1:
                title = f"{title} ({name})"
            if ok:
                sections.append(Section(title, notes=[note]))
            else:
                problems.append(f"{title}: {note.text}")
            data["checks"].append({"title": title, "target": name, "ok": ok, "level": note.level, "text": note.text})
    now = datetime.now(timezone.utc)
    schedules = [s.describe(inv.settings, now) for s in inv.registry.schedules if s.describe]
    sections.append(Section("Scheduled runs", text="\n".join(schedules)))
    data["schedules"] = schedules
    data["problems"] = problems
    if problems:
        sections.insert(0, Section("Problems", notes=[Note.warning(p) for p in problems], problem=True))
    summary = "all good" if not problems else f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    return Report(title="dbops status", summary=summary, sections=sections,
                  outcome=Outcome.OK if not problems else Outcome.FAILED, data=data)


def _job_number(text: str) -> int:
    """`7` or `#7`, as `status` shows it."""
    try:
        return int(text.lstrip("#"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a job number (status shows them as #7)") from None


@command("job cancel", "stop a running backup or drill by its job number (from `status`): what it made is removed, "
                       "the channel is told", Arg("id", "the job's number, e.g. 7 or #7", required=True,
                                                  type=_job_number), takes_target=False)
def job_cancel(inv: Invocation) -> Report:
    return jobs.cancel(inv, jobs.job_by_id(inv, inv.args.id))


AREA = Area("overview", commands=(help_command, status_command, job_cancel))
