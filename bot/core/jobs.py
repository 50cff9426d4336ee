"""Running commands: the one-at-a-time lock, job rows, the audit trail, and
errors turned into messages. Both front ends (Slack and the terminal) run
commands through here; Slack's listeners hand long work to the worker pool (`workers`)."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from handlers.errors import Cancelled, ConfigError, DbopsError, JobBusy, UsageError
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
    cancelled_by: str | None = None  # who asked it to stop (`job cancel N`), once someone has
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start_heartbeat(self) -> None:
        if self.lock is None or self.job is None or self.store is None:
            return
        with _RUNNING_LOCK:
            _RUNNING[self.job.id] = self
        self._thread = threading.Thread(target=self._beat, name=f"dbops-heartbeat-{self.job.id}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        assert self.store is not None and self.lock is not None and self.job is not None
        while not self._stop.wait(state_store.HEARTBEAT_S):
            beat = self.store.beat(self.lock, self.job.id)
            if not beat:
                log.error("job #%s lost its lock to another process; stopping it", self.job.id)
                if self.cancel is not None:
                    self.cancel.set()  # long work stops at its next check
                return
            if isinstance(beat, str):  # asked to stop from another process (or this one)
                self.stop_at_request(beat)

    def stop_at_request(self, by: str) -> None:
        """Someone asked this job to stop: its work stops at its next check, removing what it made."""
        if self.cancelled_by is None:
            self.cancelled_by = by
            log.info("job #%s is asked to stop by %s", self.job.id if self.job else "?", by)
        if self.cancel is not None:
            self.cancel.set()

    def ensure_held(self) -> None:
        """Called before anything irreversible: a job that lost its lock must not go on."""
        if self.lock is not None and not self.lock.keep():
            raise LockLost("this job lost its lock to another process (the state database was unreachable "
                           "for too long); it stopped before changing anything")

    def release(self) -> None:
        self._stop.set()
        if self.job is not None:
            with _RUNNING_LOCK:
                _RUNNING.pop(self.job.id, None)
        if self.lock is not None:
            self.lock.release()


# The jobs this process runs, by id: a cancel asked here stops them at once, not at the next beat.
_RUNNING: dict[int, JobHandle] = {}
_RUNNING_LOCK = threading.Lock()


def stop_here(job_id: int, by: str) -> bool:
    """True when this process runs job `job_id`: it is told to stop now."""
    with _RUNNING_LOCK:
        handle = _RUNNING.get(job_id)
    if handle is None:
        return False
    handle.stop_at_request(by)
    return True


def _when(job: JobRow) -> str:
    return job.started_at.strftime("%Y-%m-%d %H:%M %Z").strip() if job.started_at else "just now"


def who(actor: str) -> str:
    return f"<@{actor}>" if actor[:1] in ("U", "W") else actor


def job_words(cmd, args) -> list[str]:
    """The arguments a job row shows: positional values, and options given away from their default
    (a plain `backup` reads `backup`, not `backup target`)."""
    words = []
    for arg in cmd.args:
        value = getattr(args, arg.dest, None)
        if arg.dest in ("format", "target") or value in (None, False) or value == arg.default:
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
        if handle.cancelled_by and inv.cancel.is_set() and not report.ok:  # a drill stopped half-way reports it
            report.summary += f" (stopped at the request of {handle.cancelled_by})"
        outcome, detail = report.outcome.value, report.summary
        return report
    except DbopsError as exc:
        detail = str(exc)
        if isinstance(exc, Cancelled):
            outcome = "cancelled"
            if handle.cancelled_by:
                exc.args = (f"{exc} (stopped at the request of {handle.cancelled_by})",)
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
    if status == "failed" and inv.cancel.is_set() and handle.cancelled_by:
        status = "cancelled"  # stopped on request (a drill's report says so): not a failure
    if status == "cancelled" and handle.cancelled_by and "at the request of" not in detail:
        detail = f"{detail} (stopped at the request of {handle.cancelled_by})"
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


# -- stopping a running job ---------------------------------------------------------------------
def running_job(inv: Invocation, kind: str, target: str) -> JobRow:
    """The running job of `kind` on `target` (what `backup cancel` and `drill cancel` stop)."""
    store = _cancel_store(inv)
    found = [j for j in store.running_jobs() if j.kind == kind and j.target == target]
    if not found:
        raise UsageError(f"no {kind} job is running on `{target}`; `{inv.command_prefix} status` lists the "
                         "running jobs")
    return found[-1]


def job_by_id(inv: Invocation, job_id: int) -> JobRow:
    job = _cancel_store(inv).job(job_id)
    if job is None:
        raise UsageError(f"no job #{job_id}; `{inv.command_prefix} status` lists the running jobs")
    return job


def cancel(inv: Invocation, job: JobRow) -> Report:
    """Asks a running job to stop: at once when this process runs it, else at its heartbeat in the process
    that does. Only commands that stop cleanly half-way (`cancellable`) are asked; in Slack only the job's
    requester or an approver may ask. The job's own message says how it ended."""
    store = _cancel_store(inv)
    cmd = _command_of(inv, job.command)
    if job.status not in ("queued", "running"):
        raise UsageError(f"job #{job.id} (`{job.command}`) is not running: it {job.status}")
    if cmd is None or not cmd.cancellable:
        raise UsageError(f"job #{job.id} (`{job.command}`) cannot be cancelled: only backups and drills stop "
                         "cleanly half-way; it ends by itself")
    if inv.front_end == "slack" and inv.actor != job.requested_by and not (
            inv.is_approver is not None and inv.is_approver(inv.actor)):
        raise UsageError(f"job #{job.id} was started by {who(job.requested_by)}: only they or an approver may "
                         "cancel it")
    asked = store.request_cancel(job.id, who(inv.actor))
    if asked is None:
        raise UsageError(f"job #{job.id} (`{job.command}`) has just finished; nothing to cancel")
    here = stop_here(job.id, who(inv.actor))
    when = "now" if here else f"within {state_store.HEARTBEAT_S:g} s (its process reads the request at its heartbeat)"
    summary = (f"Asked job #{job.id} (`{job.command}` on `{job.target}`, started by {who(job.requested_by)}) to "
               f"stop {when}: it removes what it made, and its own message says how it ended.")
    return Report(title=f"Cancel job #{job.id}", summary=summary,
                  data={"job": job.id, "command": job.command, "target": job.target, "asked_by": inv.actor,
                        "stopped_here": here})


def _cancel_store(inv: Invocation) -> StateStore:
    if inv.store is None:
        raise ConfigError("running jobs are recorded in the state store, which is not configured or unreachable: "
                          "stop a job in a terminal with Ctrl-C")
    return inv.store


def _command_of(inv: Invocation, words: str):
    for front_end in ("slack", "cli"):
        try:
            return inv.registry.resolve(words.split(), front_end)[0]
        except UsageError:
            continue
    return None
