"""The running bot: state store, Slack notifier, worker pool, scheduler, approvals, and
what happens at start-up (interrupted jobs reported, the areas' start-up hooks)."""
from __future__ import annotations

import logging
import threading
import time

from handlers.backup.placement import state_placement_warning, state_shares_target
from handlers.errors import DbopsError, TargetUnreachable
from handlers.report import Report

from .. import __version__
from . import applier, jobs, output
from .approvals.book import ApprovalRequest
from .approvals.reactions import Approvals
from .command import Command
from .config import Settings
from .notify import Notifier, ProgressMessage, make_client
from .reachability import target_reachability
from .registry import Invocation, Registry
from .scheduler import Scheduler, configured_interval
from .standin import StandIn
from .state.store import StateStore
from .waiting import WaitingWork, not_run_text
from .workers import JobRunner

log = logging.getLogger("dbops.service")
WAITING_STALE_BEATS = 12  # scheduler ticks without a beat before waiting work counts as abandoned


class BotService:
    """The bot as it runs; what it does beyond core comes from the areas in `registry`."""

    def __init__(self, settings: Settings, registry: Registry, *, start_background: bool = True) -> None:
        self.settings = settings
        self.registry = registry
        self.secrets = settings.secrets()
        client = make_client(settings.slack_bot_token, settings.slack_api_url) if settings.slack_bot_token else None
        self.notifier = Notifier(client, self.secrets)
        self.runner = JobRunner()
        self.waiting = WaitingWork(lambda: self.store)
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        # Without its state database the bot still runs, degraded: the night production (and the
        # state store on it) is gone is the night `status`, `backup list` and `restore` matter most.
        self.store: StateStore | None = None
        self.approvals: Approvals | None = None
        self.state_down: str | None = None
        self.scheduler: Scheduler | None = None
        self.standin: StandIn | None = None  # records restore requests while the state database is down
        self._standin_lock = threading.Lock()
        self._closed = False  # close() ran: no stand-in is started any more
        self._untold: dict[int, float] = {}  # requests left `applying` whose outcome could not be told yet
        self._open_store()
        if start_background:
            self.startup()

    def _open_store(self) -> bool:
        """Opens the state store if it is not open; True once it is. On the first success after a
        failure the start-up work (orphans, the areas' hooks) runs then."""
        if self.store is not None:
            return True
        try:
            self.store = StateStore(self.settings.state_url, named=self.settings.state_url_env)
        except TargetUnreachable as exc:
            if self.state_down is None:
                log.warning("starting degraded: %s", exc)
            self.state_down = str(exc)
            return False
        self.approvals = self._approvals_on(self.store)
        if self.state_down is not None and self.settings.channel:
            self.notifier.post(self.settings.channel, ":white_check_mark: the state database answers again: "
                                                      "every command works again.")
        self.state_down = None
        return True

    @property
    def degraded(self) -> bool:
        return self.store is None

    # -- start-up ----------------------------------------------------------------
    def startup(self) -> None:
        if self.store is not None:
            self.runner.submit(self._recover)
        self.scheduler = Scheduler(self)
        self.scheduler.start()

    def reconnect(self) -> bool:
        """Every scheduler tick while degraded: the state store is tried again."""
        was_down = self.store is None
        with self._standin_lock:
            if was_down and self.standin is not None and self.standin.busy():
                return False  # a restore approved on the stand-in finishes where its votes were counted
            if self._open_store() and was_down:
                self._retire_standin()
                self.runner.submit(self._recover)
        return self.store is not None

    # -- the stand-in for the state database ------------------------------------
    def requests_store(self) -> StateStore:
        """Where approval requests are recorded: the state store, or while it is unreachable the
        stand-in, started on first need (see bot/core/standin.py)."""
        with self._standin_lock:
            if self.store is not None:
                return self.store
            if self.standin is None:
                if self._closed:
                    raise DbopsError("the bot is stopping: ask again once it is back")
                standin = StandIn.start()
                self.secrets.extend(standin.secrets())  # the notifier scrubs the same list
                self.standin = standin
                self.approvals = self._approvals_on(standin.store)
            return self.standin.store

    def _approvals_on(self, store: StateStore) -> Approvals:
        return Approvals(self.settings, store, self.notifier, self.is_approver, self.start_apply)

    def _retire_standin(self) -> None:
        """The state database is back: requests still pending on the stand-in are void (their votes
        would be counted nowhere), its audit entries move to the state store, and it is removed."""
        standin, self.standin = self.standin, None
        if standin is None:
            return
        try:
            old = self._approvals_on(standin.store)
            for req in old.book.with_status("pending"):
                if old.book.move(req.id, ("pending",), "expired", "void: the state database is back"):
                    old.tell(req, f":alarm_clock: `{req.code}` was recorded while the state database was down; "
                                  "it is void now that the state database is back, and nothing was applied. "
                                  "Ask again: `/db restore ...`.", "bot", "expire", "expired")
            moved = standin.hand_over(self.store)
            log.info("the stand-in's %d audit entries are in the state store now", moved)
        except Exception:
            log.exception("retiring the stand-in failed; its audit entries are in the log only")
        finally:
            standin.close()

    def _recover(self) -> None:
        self.recover_orphans()
        for hook in self.registry.startup_hooks:
            try:
                lines = hook(self)
            except Exception:
                log.exception("start-up hook %s failed", getattr(hook, "__name__", hook))
                continue
            if lines and self.settings.channel:
                self.notifier.post(self.settings.channel, "\n".join(lines))

    def recover_orphans(self) -> None:
        """Jobs whose process died (this replica's before a restart, or another replica's) are marked
        failed and reported, and approved requests it left `applying` are settled. Runs at start-up and
        on every scheduler tick: a dead process's lock can take a moment to be released by the server."""
        for job in self.store.orphaned_jobs():
            text = (f":warning: Job #{job.id} `{output.escape(job.command)}` on `{output.escape(job.target)}` "
                    f"(started by {jobs.who(job.requested_by)}) was interrupted: the bot process running it stopped. "
                    "It is marked failed; run it again.")
            self.store.audit("bot", "recover", "failed", subcommand=job.command, target=job.target,
                             detail=f"job #{job.id} marked failed: its process stopped")
            channel = job.channel or self.settings.channel
            if channel and job.message_ts:
                self.notifier.update(channel, job.message_ts, text)
            elif channel:
                self.notifier.post(channel, text)
        for line in applier.recover_applying(self, self._untold):  # requests left `applying`, of every kind
            if self.settings.channel:
                self.notifier.post(self.settings.channel, line)
        applier.tell_pipeline_outcomes(self)
        stale_after = WAITING_STALE_BEATS * (self.scheduler.interval if self.scheduler else configured_interval())
        for work in self.waiting.abandoned(stale_after):
            self.store.audit("bot", "recover", "failed", channel=work["channel"], subcommand=work["command"],
                             detail=f"waiting work of {work['requested_by']} not run: its process stopped")
            self._tell_not_run(work["command"], work["channel"], work["slack_user"], "it was killed or crashed")

    def close(self) -> None:
        """Stops the background work; commands still waiting for a worker are told they did not run."""
        if self.scheduler:
            self.scheduler.stop()
        self.runner.shutdown()
        if self.store is not None:
            self.store.close()
        with self._standin_lock:  # a stand-in starting right now is up first, then stopped with the rest
            standin, self.standin, self._closed = self.standin, None, True
        if standin is not None:
            standin.close()

    def submit_command(self, cmd: Command, args, actor: str, channel: str | None, user: str | None) -> None:
        work_id = self.waiting.record(cmd.name, actor, channel, user)

        def start() -> None:
            if self.waiting.take(work_id):  # else: told already that it would not run
                self.run_command(cmd, args, actor=actor, channel=channel, user_for_errors=user)

        def dropped() -> None:
            if self.waiting.take(work_id):
                self._tell_not_run(cmd.name, channel, user, "a restart or deploy")

        self.runner.submit(start, on_dropped=dropped)

    def _tell_not_run(self, command: str, channel: str | None, user: str | None, why: str) -> None:
        text = not_run_text(command, why)
        if channel and user:
            self.notifier.ephemeral(channel, user, text)
        elif channel:
            self.notifier.post(channel, text)

    # -- running commands ----------------------------------------------------------
    def run_command(self, cmd: Command, args, actor: str, channel: str | None, user_for_errors: str | None) -> None:
        """Runs in the worker pool: a job message updated in place for long work, the report posted at the end."""
        progress = None
        try:
            store = self.store
            if store is None and cmd.recorded_on_standin:
                store = self.requests_store()
            inv = Invocation(command=cmd, args=args, settings=self.settings, actor=actor, registry=self.registry,
                             channel=channel, store=self.store, requests=store, front_end="slack",
                             is_approver=self.is_approver)
            handle = jobs.acquire(inv, store)
            if cmd.long_running:
                title = (f"`{cmd.name}` on `{output.escape(inv.target_name)}`"  # as typed: not checked yet
                         + (f" (job #{handle.job.id})" if handle.job else ""))
                progress = ProgressMessage(self.notifier, channel, title)
                ts = progress.start(f"started by {jobs.who(actor)}")
                if ts and handle.job:
                    store.update_job(handle.job.id, message_ts=ts)
                inv.progress = progress.tick
            report = jobs.run(inv, store, handle)
        except DbopsError as exc:
            self._tell_error(channel, user_for_errors, str(exc), progress)
            return
        except Exception as exc:  # never leave the person with "queued" and nothing more
            log.exception("running %r failed", cmd.name)
            self._tell_error(channel, user_for_errors, f"`{cmd.name}` failed with an internal error "
                             f"({type(exc).__name__}); the details are in the bot's log", progress)
            return
        if progress is not None:
            progress.finish(report)
        elif channel:
            self.notifier.post_report(channel, report)

    def run_scheduled(self, words: list[str]) -> None:
        """A scheduled run of a command: its report goes to the ops channel."""
        cmd, args = self.registry.parse(words, "slack")
        self.run_command(cmd, args, actor="scheduler", channel=self.settings.channel, user_for_errors=None)

    def start_apply(self, req: ApprovalRequest) -> None:
        """An approved request is applied in the worker pool (bot/core/applier.py)."""
        self.runner.submit(lambda: applier.apply_approved(self, req))

    def _tell_error(self, channel: str | None, user: str | None, text: str, progress: ProgressMessage | None) -> None:
        # An error is text: what it quotes of a command is no markup. Only the person who asked sees
        # the mention of whoever runs the job in the way.
        shown = output.escape(text)
        if progress is not None and progress.ts:
            self.notifier.update(progress.channel, progress.ts, f":x: {progress.title}: {shown}")
        if channel and user:
            self.notifier.ephemeral(channel, user, f":warning: {output.escape(text, mentions=True)}")
        elif channel:
            self.notifier.post(channel, f":warning: {shown}")

    def post_report(self, report: Report, channel: str | None = None) -> None:
        channel = channel or self.settings.channel
        if channel:
            self.notifier.post_report(channel, report)

    # -- who may approve ------------------------------------------------------------
    def is_approver(self, user: str) -> bool:
        if user in self.settings.approvers:
            return True
        for group in self.settings.approver_groups:
            if user in self._group_members(group):
                return True
        return False

    def _group_members(self, group: str) -> frozenset[str]:
        cached = self._groups.get(group)
        if cached and time.monotonic() - cached[0] < 300:
            return cached[1]
        answer = self.notifier.call("usergroups.users.list", usergroup=group)
        members = frozenset(answer.get("users", [])) if answer else frozenset()
        self._groups[group] = (time.monotonic(), members)
        return members

    # -- health --------------------------------------------------------------------
    def health(self) -> tuple[bool, dict]:
        """(serving, body). A target that is down is the bot doing its job (200, "degraded"); so is a
        state database that is down (the bot answers from storage). 503 only when the bot itself
        cannot work: its scheduler thread has died."""
        state_ok = self.store is not None and self.store.reachable()
        targets = {name: ok for name, ok, _ in target_reachability(self.settings)}
        serving = self.scheduler is None or self.scheduler.alive()
        warnings = []
        if not state_ok:
            warnings.append(f"the state database is unreachable: only {self.registry.works_degraded('slack')} work")
        shared = state_shares_target(self.settings.state_url,
                                     {name: t.dsn for name, t in self.settings.targets.items()})
        if shared:
            warnings.append(state_placement_warning(shared))
        status = "ok" if state_ok and all(targets.values()) else "degraded"
        if not serving:
            status = "down"
        return serving, {"version": __version__, "status": status, "state_database": state_ok,
                         "targets": targets, "warnings": warnings}
