"""Running one step of a drill or a restore (create instance, fetch archive, restore, verify, ...), for every
kind of drill and restore.

A step's work returns what it did (a line for the report), or `Failed(...)` when it failed but the
run carries on (a restore with errors still goes on to verification, whose checks name what is
missing), or raises `StepFailed` when it cannot go on.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from .. import fmt
from ..errors import Cancelled, DbopsError
from ..report import Check, Progress, ProgressFn, Verdict


class StepOutcome(enum.StrEnum):
    """The state of a step in a result's `steps` (a StrEnum: stored and compared as its text)."""

    RUNNING = "running"  # until its work returns: a step something broke off never counts as ok
    OK = "ok"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class StepFailed(DbopsError):
    """The step could not do its work; the message says why (secret-free). The run stops there."""


@dataclass(frozen=True)
class Failed:
    """The step failed and the run goes on; `detail` says how."""

    detail: str


class Steps(Protocol):
    """What a step runs for: a DrillResult, a RestoreResult."""

    steps: list[dict[str, Any]]
    checks: list[Check]
    cancelled: bool
    error: str | None


StepWork = Callable[[], "str | Failed | None"]


def skip_step(result: Steps, name: str) -> None:
    """Record a step that did not start: the run was cancelled, or an earlier step failed."""
    result.steps.append({"step": name, "started_at": time.time(), "seconds": 0.0, "outcome": StepOutcome.SKIPPED,
                         "detail": "cancelled before it started" if result.cancelled else
                         "skipped: an earlier step failed"})


def run_steps(result: Steps, steps: list[tuple[str, StepWork]], run_one: Callable[[str, StepWork], bool],
              cancel: Any) -> bool:
    """Run `steps` in order with `run_one` (a run_step with the caller's progress and clean-up); once one
    cannot go on, or `cancel` is set, the rest are recorded as skipped. False when one could not go on."""
    go = True
    for name, work in steps:
        if go and cancel.is_set():
            result.cancelled = True
        if not go or result.cancelled:
            skip_step(result, name)
            go = False
            continue
        go = run_one(name, work)
    return go


def run_step(result: Steps, name: str, work: StepWork, progress: ProgressFn,
             clean: Callable[[str], str], on_interrupt: Callable[[], None],
             passes: tuple[type[BaseException], ...] = ()) -> bool:
    """Run one step, timing it and recording its outcome in `result.steps`; False when the run
    cannot go on. `clean` scrubs secrets from any text kept; `on_interrupt` runs on Ctrl-C. An
    exception of a `passes` class is recorded, then raised (a refusal before anything was done)."""
    record = {"step": name, "started_at": time.time(), "seconds": 0.0, "outcome": StepOutcome.RUNNING, "detail": ""}
    result.steps.append(record)
    mono = time.monotonic()
    checks_before = len(result.checks)
    go_on = True
    try:
        progress(Progress(name))
        done = work()
        if isinstance(done, Failed):
            record.update(outcome=StepOutcome.FAILED, detail=clean(done.detail))
        else:
            record.update(outcome=StepOutcome.OK, detail=clean(done or ""))
    except Cancelled:
        record.update(outcome=StepOutcome.CANCELLED, detail="cancelled while running")
        result.cancelled = True
        go_on = False
    except KeyboardInterrupt:
        record.update(outcome=StepOutcome.CANCELLED, detail="interrupted (Ctrl-C)")
        on_interrupt()
        go_on = False
    except passes as exc:
        record.update(outcome=StepOutcome.FAILED, detail=clean(str(exc)),
                      seconds=round(time.monotonic() - mono, 3))
        raise
    except Exception as exc:  # noqa: BLE001 -- any failure still ends in a report and a deleted instance
        message = clean(str(exc) if isinstance(exc, DbopsError) else f"{type(exc).__name__}: {exc}")
        record.update(outcome=StepOutcome.FAILED, detail=message)
        result.error = result.error or f"{name}: {message}"
        go_on = False
    record["seconds"] = round(time.monotonic() - mono, 3)
    record["checks"] = max(0, len(result.checks) - checks_before)  # so the summary can say which step made them
    progress(Progress(name, 1.0, f"{name}: {record['outcome']} in {fmt.duration(record['seconds'])}"))
    return go_on


def checks_outcome(checks: list[Check]) -> str | Failed:
    """What a verify step returns for the checks it made (a check not run neither passed nor failed)."""
    failed = [c for c in checks if c.verdict is Verdict.FAILED]
    not_run = sum(1 for c in checks if c.verdict is Verdict.NOT_RUN)
    made = len(checks) - not_run
    also = f", {not_run} not run" if not_run else ""
    if failed:
        return Failed(f"{len(failed)} of {fmt.plural(made, 'check')} failed{also}")
    return f"{fmt.plural(made, 'check')} passed{also}"
