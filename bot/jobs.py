"""Running commands: the one-at-a-time lock, job rows, the audit trail, and
errors turned into messages. Both front ends (Slack and the terminal) run
commands through here; Slack's listeners hand long work to `JobRunner`'s pool."""
from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from handlers.errors import DbopsError, JobBusy
from handlers.report import Outcome, Report

from .registry import Invocation
from .state.store import JobLock, JobRow, StateStore

log = logging.getLogger("dbops.jobs")


class InternalError(DbopsError):
    """An unexpected failure; the details are in the log, the message says only what failed."""


@dataclass
class JobHandle:
    job: JobRow | None
    lock: JobLock | None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def _when(job: JobRow) -> str:
    return job.started_at.strftime("%Y-%m-%d %H:%M %Z").strip() if job.started_at else "just now"


def who(actor: str) -> str:
    return f"<@{actor}>" if actor[:1] in ("U", "W") else actor


def acquire(inv: Invocation, store: StateStore | None) -> JobHandle:
    """Takes the (target, kind) lock and records the job; raises JobBusy naming who runs the other one."""
    cmd = inv.command
    if not cmd.long_running or store is None:
        return JobHandle(None, None)
    target = inv.target_name if cmd.takes_target else "-"
    lock = JobLock(store.dsn, target, cmd.lock_kind)
    if not lock.try_acquire():
        other = store.running_job(target, cmd.lock_kind)
        by = f" started by {who(other.requested_by)} at {_when(other)} (job #{other.id}: `{other.command}`)" if other else ""
        raise JobBusy(f"a {cmd.lock_kind} job on `{target}` is already running{by}. Try again when it has finished.")
    try:
        words = [cmd.name] + [str(v) for k, v in vars(inv.args).items()
                              if k not in ("format", "target") and v not in (None, False)]
        job = store.create_job(target, cmd.lock_kind, " ".join(words), inv.actor, inv.channel)
    except Exception:
        lock.release()
        raise
    return JobHandle(job, lock)


def run(inv: Invocation, store: StateStore | None, handle: JobHandle | None = None) -> Report:
    """Runs a command to its end: job row finished, lock released, audit entry written.

    Expected failures are re-raised as DbopsError (message fit to show); anything
    else is logged with its traceback and re-raised as InternalError.
    """
    handle = handle or acquire(inv, store)
    started = time.monotonic()
    outcome, detail, report = "error", None, None
    try:
        report = inv.command.run(inv)
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
    finally:
        ms = int((time.monotonic() - started) * 1000)
        if store is not None:
            try:
                if handle.job is not None:
                    status = "succeeded" if outcome == Outcome.OK.value else "failed"
                    store.finish_job(handle.job.id, status, detail or "",
                                     report.to_json() if report is not None else None)
                store.audit(inv.actor, "command", outcome, channel=inv.channel, subcommand=inv.command.name,
                            target=inv.target_name if inv.command.takes_target else None, duration_ms=ms,
                            detail=(detail or "")[:500])
            except Exception:
                log.exception("could not record the end of %r", inv.command.name)
        handle.release()


class JobRunner:
    """The worker pool that runs Slack's work off the request path."""

    def __init__(self, store: StateStore | None, workers: int = 4) -> None:
        self.store = store
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dbops-job")

    def submit(self, fn: Callable[[], None]) -> Future:
        future = self.pool.submit(fn)
        future.add_done_callback(_log_crash)
        return future

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _log_crash(future: Future) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("background work crashed: %s", type(exc).__name__, exc_info=exc)
