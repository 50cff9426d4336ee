"""Running one step of a drill (create instance, restore, verify, delete instance), for every kind of drill.

A step's work returns what it did (a line for the report), or `Failed(...)` when it failed but the
drill carries on (a restore with errors still goes on to verification, whose checks name what is
missing), or raises `StepFailed` when the drill cannot go on.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Callable

from .. import fmt
from ..errors import Cancelled, DbopsError
from ..report import Progress, ProgressFn
from .result import DrillResult


class StepOutcome(enum.StrEnum):
    """The state of a step in `DrillResult.steps` (a StrEnum: stored and compared as its text)."""

    RUNNING = "running"  # until its work returns: a step something broke off never counts as ok
    OK = "ok"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class StepFailed(DbopsError):
    """The step could not do its work; the message says why (secret-free). The drill stops there."""


@dataclass(frozen=True)
class Failed:
    """The step failed and the drill goes on; `detail` says how."""

    detail: str


StepWork = Callable[[], "str | Failed | None"]


def run_step(result: DrillResult, name: str, work: StepWork, progress: ProgressFn,
             clean: Callable[[str], str], on_interrupt: Callable[[], None]) -> bool:
    """Run one step, timing it and recording its outcome in `result.steps`; False when the drill
    cannot go on. `clean` scrubs secrets from any text kept; `on_interrupt` runs on Ctrl-C."""
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
    except Exception as exc:  # noqa: BLE001 -- any failure still ends in a report and a deleted instance
        message = clean(str(exc) if isinstance(exc, DbopsError) else f"{type(exc).__name__}: {exc}")
        record.update(outcome=StepOutcome.FAILED, detail=message)
        result.error = result.error or f"{name}: {message}"
        go_on = False
    record["seconds"] = round(time.monotonic() - mono, 3)
    record["checks"] = max(0, len(result.checks) - checks_before)  # so the summary can say which step made them
    progress(Progress(name, 1.0, f"{name}: {record['outcome']} in {fmt.duration(record['seconds'])}"))
    return go_on


def checks_outcome(checks: list[dict]) -> str | Failed:
    """What a verify step returns for the checks it made."""
    failed = [c for c in checks if not c["ok"]]
    if failed:
        return Failed(f"{len(failed)} of {fmt.plural(len(checks), 'check')} failed")
    return f"{fmt.plural(len(checks), 'check')} passed"
