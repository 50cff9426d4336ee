"""Running commands: the one-at-a-time lock, job rows, the audit trail, and
errors turned into messages. Both front ends (Slack and the terminal) run
commands through here; Slack's listeners hand long work to the worker pool (`workers`)."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from handlers.errors import DbopsError, JobBusy
from handlers.report import Outcome, Report

from .registry import Invocation, check_target
from .state import store as state_store
from .state.store import JobLock, JobRow, StateStore

log = logging.getLogger("dbops.jobs")


class InternalError(DbopsError):
    """An unexpected failure; the details are in the log, the message says only what failed."""


class StateUnavailable(DbopsError):
    """The state database failed while a job was being started or recorded."""


class LockLost(DbopsError):
    """Another process took this job's lock (its heartbeat could not reach the state database)."""


@dataclass
class JobHandle:
    """A running job: its row, its lock, and the heartbeat that keeps both alive."""

    job: JobRow | None
    lock: JobLock | None
    store: StateStore | None = None
    cancel: threading.Event | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start_heartbeat(self) -> None:
        if self.lock is None or self.job is None or self.store is None:
            return
        self._thread = threading.Thread(target=self._beat, name=f"dbops-heartbeat-{self.job.id}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        assert self.store is not None and self.lock is not None and self.job is not None
        while not self._stop.wait(state_store.HEARTBEAT_S):
            if not self.store.beat(self.lock, self.job.id):
                log.error("job #%s lost its lock to another process; stopping it", self.job.id)
                if self.cancel is not None:
                    self.cancel.set()  # long work stops at its next check
                return

    def ensure_held(self) -> None:
        """Called before anything irreversible: a job that lost its lock must not go on."""
        if self.lock is not None and not self.lock.keep():
            raise LockLost("this job lost its lock to another process (the state database was unreachable "
                           "for too long); it stopped before changing anything")

    def release(self) -> None:
        self._stop.set()
        if self.lock is not None:
            self.lock.release()


def _when(job: JobRow) -> str:
    return job.started_at.strftime("%Y-%m-%d %H:%M %Z").strip() if job.started_at else "just now"


def who(actor: str) -> str:
    return f"<@{actor}>" if actor[:1] in ("U", "W") else actor


def job_words(cmd, args) -> list[str]:
    """The arguments a job row shows: positional values, and options given away from their default
    (a plain `backup` reads `backup`, not `backup target`)."""
    words = []
    for arg in cmd.args:
        key = arg.name.lstrip("-").replace("-", "_")
        value = getattr(args, key, None)
        if key in ("format", "target") or value in (None, False) or value == arg.default:
            continue
        words.append(str(value) if arg.positional else arg.name if arg.flag else f"{arg.name} {value}")
    return words


def acquire(inv: Invocation, store: StateStore | None) -> JobHandle:
    """Takes the (target, kind) lock and records the job; raises JobBusy naming who runs the other one."""
    cmd = inv.command
    if not cmd.long_running or store is None:
        return JobHandle(None, None)
    import psycopg  # loaded already by the store; imported here so that commands without one never load it

    target = inv.target_name if cmd.takes_target else "-"
    words = [cmd.name] + job_words(cmd, inv.args)
    try:
        lock, job = store.start_job(target, cmd.lock_kind, " ".join(words), inv.actor, inv.channel)
    except psycopg.Error:
        log.exception("could not start a job for %r", cmd.name)
        raise StateUnavailable(f"`{cmd.name}` did not start: the state database did not answer. Nothing was "
                               "done; try again in a minute.") from None
    if lock is None:
        by = f" started by {who(job.requested_by)} at {_when(job)} (job #{job.id}: `{job.command}`)" if job else ""
        raise JobBusy(f"a {cmd.lock_kind} job on `{target}` is already running{by}. Try again when it has finished.")
    handle = JobHandle(job, lock, store, inv.cancel)
    inv.ensure_lock = handle.ensure_held
    handle.start_heartbeat()
    return handle


def run(inv: Invocation, store: StateStore | None, handle: JobHandle | None = None,
        work: Callable[[Invocation], Report] | None = None) -> Report:
    """Runs a command to its end: job row finished, lock released, audit entry written.

    Every front end starts and finishes jobs here. `work` replaces the command's own run
    function (the Slack form hands in what it read). Expected failures are re-raised as
    DbopsError (message fit to show); anything else is logged with its traceback and
    re-raised as InternalError.
    """
    check_target(inv)
    handle = handle or acquire(inv, store)
    started = time.monotonic()
    outcome, detail, report = "error", None, None
    try:
        report = (work or inv.command.run)(inv)
        outcome, detail = report.outcome.value, report.summary
        return report
    except DbopsError as exc:
        detail = str(exc)
        raise
    except Exception as exc:
        log.exception("command %r failed", inv.command.name)
        detail = f"internal error: {type(exc).__name__}"
        raise InternalError(f"`{inv.command.name}` failed with an internal error ({type(exc).__name__}); "
                            "the details are in the bot's log") from None
    except BaseException:  # Ctrl-C, or the process is stopping
        outcome, detail = "cancelled", "interrupted"
        raise
    finally:
        if store is not None:
            _record_end(inv, store, handle, outcome, detail or "", report, int((time.monotonic() - started) * 1000))
        handle.release()


def _record_end(inv: Invocation, store: StateStore, handle: JobHandle, outcome: str, detail: str,
                report: Report | None, ms: int) -> None:
    # A request that now waits for approval was done right: the job succeeded.
    status = {Outcome.OK.value: "succeeded", Outcome.APPROVAL_REQUIRED.value: "succeeded",
              "cancelled": "cancelled"}.get(outcome, "failed")
    for attempt in range(3):  # a state database blip must not leave the row `running` (a false alarm later)
        try:
            if handle.job is not None:
                store.finish_job(handle.job.id, status, detail, report.to_json() if report is not None else None)
            store.audit(inv.actor, "command", outcome, channel=inv.channel, subcommand=inv.command.name,
                        target=inv.target_name if inv.command.takes_target else None, duration_ms=ms,
                        detail=detail[:500])
            return
        except Exception:
            if attempt == 2:
                log.exception("could not record the end of %r", inv.command.name)
            else:
                time.sleep(0.5 * (attempt + 1))
