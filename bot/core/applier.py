"""Applying an approved request, whatever its kind: the one lifecycle around each area's own work.

1. the claim: a lock on this request alone (`apply-<id>`), taken before the request moves to
   `applying` and held until it leaves it, so a request found `applying` whose claim nobody holds
   was left by a process that stopped;
2. the job lock, through `jobs.run`: the area's job family on the target (a restore never beside
   another restore, a read-only role never beside a `readonly rotate`), with its job row and audit;
3. the status, by the RequestStatus enum: approved -> applying -> applied, failed, or pending again
   (an approval withdrawn before anything ran);
4. one error path: what the area raises (DbopsError, or anything else: logged, "internal error"), a
   busy job family, and a request changed since it was approved, all end the request `failed`;
5. the thread: the area's report, then one line with the outcome (and the audit entry);
6. at start-up and at every tick, a request a stopped process left `applying` is settled by its area's
   `recover`.

What is applied is what was approved: each area calls `inv.ensure_approved()` right before its first
change, which recomputes the SHA-256 the approval binds from the request it is about to run and
refuses on any difference (the state store is writable by more than the bot), and checks the seals
the bot made when it posted the request and counted its votes (approvals/seal.py)."""
from __future__ import annotations

import argparse
import logging
import time

from handlers.errors import DbopsError, JobBusy
from handlers.report import Outcome, Report

from . import jobs
from .approvals.book import ApprovalRequest, RequestStatus
from .command import Command
from .registry import Applied, Applier, Bot, Invocation
from .state.store import JobLock, StateStore

log = logging.getLogger("dbops.applier")


class RequestChanged(DbopsError):
    """What is about to run is not what the approval binds: the request was changed after it was posted."""


def changed_since_approval(req: ApprovalRequest, found_sha256: str) -> str | None:
    """Why `req` must not run when what is about to run hashes to `found_sha256`; None when it may."""
    if found_sha256 == req.sha256:
        return None
    return (f"refused: what is about to run (SHA-256 `{found_sha256[:16]}…`) is not what the approval binds "
            f"(`{req.sha256[:16]}…`): the request was changed in the state store after it was posted. "
            "Nothing was applied; ask again, and find out who can write to the state database")


def apply_claim(store: StateStore, req: ApprovalRequest) -> JobLock:
    return JobLock(store.dsn, req.target, f"apply-{req.id}")


def job_name(req: ApprovalRequest) -> str:
    return f"{req.kind} {req.code}"


def _job_command(applier: Applier, req: ApprovalRequest) -> Command:
    """The job the apply runs as: its family's lock, named by the request (`restore r004`)."""
    return Command(name=job_name(req), summary=f"apply the approved {req.kind} request {req.code}",
                   run=lambda inv: Report(title=req.code), long_running=True, lock=applier.lock,
                   takes_target=applier.per_target)


def apply_approved(bot: Bot, req: ApprovalRequest) -> None:
    """Runs in the worker pool once a request is approved (see the module docstring)."""
    approvals = bot.approvals  # with the state database down, the stand-in's: where the votes were counted
    applier = bot.registry.appliers.get(req.kind)
    if applier is None:
        log.error("no applier for %s requests: %s stays approved", req.kind, req.code)
        return
    if req.apply_by == "pipeline":
        approvals.tell(req, f":inbox_tray: `{req.code}` is approved; the deploy pipeline may apply it now "
                            "(`dbops migrate gate`). The bot never applies it.", "bot", "approved-for-pipeline",
                       RequestStatus.APPROVED)
        return
    claim = apply_claim(approvals.store, req)
    if not claim.try_acquire():
        return  # another replica applies it
    try:
        if not approvals.book.move(req.id, (RequestStatus.APPROVED,), RequestStatus.APPLYING):
            return  # another replica took it, or an approval was withdrawn
        current = approvals.book.get(req.id) or req  # as it is now: what ensure_approved checks
        _conclude(bot, current, _run(bot, applier, current), "apply")
    finally:
        claim.release()


def _run(bot: Bot, applier: Applier, req: ApprovalRequest) -> Applied:
    approvals = bot.approvals
    inv = Invocation(command=_job_command(applier, req), args=argparse.Namespace(target=req.target, format="text"),
                     settings=bot.settings, actor=req.requested_by, registry=bot.registry, channel=req.channel,
                     store=bot.store, requests=approvals.store, front_end="slack")

    def ensure_approved() -> None:
        changed = changed_since_approval(req, applier.binds(req)) or approvals.book.sealer.problem(approvals.book, req)
        if changed:
            raise RequestChanged(changed)

    inv.ensure_approved = ensure_approved
    ended: list[Applied] = []

    def work(inv: Invocation) -> Report:
        applied = applier.apply(bot, req, inv)
        ended.append(applied)
        if applied.report is not None:
            return applied.report
        outcome = {RequestStatus.APPLIED: Outcome.OK, RequestStatus.PENDING: Outcome.APPROVAL_REQUIRED}
        return Report(title=f"{req.kind} {req.code}", summary=applied.detail,
                      outcome=outcome.get(applied.status, Outcome.FAILED))

    try:
        jobs.run(inv, approvals.store, work=work)
    except RequestChanged as exc:
        log.error("%s was changed after it was posted; refused", req.code)
        return Applied(RequestStatus.FAILED, str(exc), refused=True)
    except JobBusy as exc:
        return Applied(RequestStatus.FAILED, f"nothing was applied: {exc}")
    except DbopsError as exc:  # jobs.run logged anything unexpected and made it an InternalError
        return Applied(RequestStatus.FAILED, str(exc))
    return ended[0]


OUTCOME_WORDS = {RequestStatus.APPLIED: (":white_check_mark:", "applied"), RequestStatus.FAILED: (":x:", "failed"),
                 RequestStatus.PENDING: (":leftwards_arrow_with_hook:", "waits for approval again")}


def _conclude(bot: Bot, req: ApprovalRequest, applied: Applied, action: str, found_later: bool = False) -> bool:
    """The request moved to its outcome, the report and one line in its thread, the audit entry."""
    approvals = bot.approvals
    if not approvals.book.move(req.id, (RequestStatus.APPLYING,), applied.status, applied.detail[:500]):
        return False
    if applied.report is not None and req.channel:
        approvals.notifier.post_report(req.channel, applied.report, thread_ts=req.message_ts)
    icon, word = (":no_entry:", "refused") if applied.refused else OUTCOME_WORDS[applied.status]
    when = " (found after its process stopped)" if found_later else ""
    approvals.tell(req, f"{icon} `{req.code}` {word}{when}: {applied.detail}", "bot", action,
                   "refused" if applied.refused else applied.status)
    return True


def tell_pipeline_outcomes(bot: Bot) -> None:
    """At every scheduler tick: what the deploy pipeline's gate decided, told in the request's thread
    (the pipeline holds no Slack token) and its message redrawn."""
    approvals = bot.approvals
    for req in approvals.book.take_untold_by_pipeline():
        detail = req.status_detail or str(req.status)
        if req.status is RequestStatus.APPLIED:
            text = f":white_check_mark: `{req.code}` {detail}"
        else:
            text = f":no_entry: `{req.code}` was refused by the pipeline's gate: {detail.removeprefix('refused: ')}"
        approvals.tell(req, text, "bot", "pipeline", req.status)


def unknown_outcome(req: ApprovalRequest) -> Applied:
    return Applied(RequestStatus.FAILED, "the bot stopped while applying it, and what it had done is unknown: "
                                         f"check `{req.target}` before asking again")


RETRY_UNTOLD_S = 60  # a request whose outcome could not be told is tried again after this


def recover_applying(bot: Bot, untold: dict[int, float] | None = None) -> list[str]:
    """At start-up and at every scheduler tick: requests of every kind left `applying` by a process
    that stopped (nobody holds their claim, their job does not beat), each settled by its area's
    `recover` and told in its thread. `untold`: request id -> when to try again one whose outcome
    could not be told (said once). Returns lines for the channel."""
    approvals, untold = bot.approvals, {} if untold is None else untold
    lines = []
    for req in approvals.book.with_status(RequestStatus.APPLYING):
        if untold.get(req.id, 0.0) > time.monotonic() or approvals.store.job_beats(job_name(req)):
            continue  # tried just now, or a live process applies it (its claim's connection may have dropped)
        claim = apply_claim(approvals.store, req)
        if not claim.try_acquire():
            continue  # a live process is applying it right now
        try:
            current = approvals.book.get(req.id)
            if current is None or current.status is not RequestStatus.APPLYING:
                continue
            applier = bot.registry.appliers.get(current.kind)
            try:
                found = applier.recover(bot, current) if applier and applier.recover else unknown_outcome(current)
            except Exception as exc:
                if not isinstance(exc, DbopsError):
                    log.exception("recovering %s failed", current.code)
                if current.id not in untold:
                    why = exc if isinstance(exc, DbopsError) else f"internal error ({type(exc).__name__})"
                    lines.append(f":warning: `{current.code}` was being applied when the bot stopped; what it did "
                                 f"cannot be told now ({why}): it stays `applying` until it can")
                untold[current.id] = time.monotonic() + RETRY_UNTOLD_S
                continue
            untold.pop(current.id, None)
            if _conclude(bot, current, found, "recover", found_later=True):
                icon, word = OUTCOME_WORDS.get(found.status, (":x:", str(found.status)))
                lines.append(f"{icon} `{current.code}` {current.kind} {current.name}: {word} (found `applying` after "
                             "its process stopped)")
        finally:
            claim.release()
    return lines
