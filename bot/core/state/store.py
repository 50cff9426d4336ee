"""The bot's memory in schema `dbops`: jobs, the audit log, schedule claims.

`JobLock` is the one-job-per-(target, kind) rule: a session advisory lock held
on its own connection for the whole job, so it holds across replicas and is
released by PostgreSQL itself when a process dies. A job is also alive while
its heartbeat is fresh: the lock's connection may drop while the job runs
(idle_session_timeout, a failover, a proxy), and the heartbeat re-takes it.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from handlers.errors import ConfigError, TargetUnreachable
from handlers.target import connection_reason, describe_dsn

from . import migrate

# psycopg is imported by the methods that talk to the database: importing this module (every
# command's declaration does, for the job lock) must stay cheap for `dbops --help`.
if TYPE_CHECKING:
    import psycopg

_JOB_LOCK_SPACE = 0x6462_6F70  # "dbop": first key of the two-key advisory lock
# Held (per transaction) while a job lock is taken and its row written, so that a
# second requester sees the winner's row, never a lock without one.
_JOB_SETUP_SPACE = 0x6462_6F71
HEARTBEAT_S = float(os.environ.get("DBOPS_JOB_HEARTBEAT_S", "10"))
STALE_AFTER_S = 3 * HEARTBEAT_S  # a job without its lock and without a heartbeat for this long is dead
SCHEDULE_ATTEMPTS = 3  # tries per scheduled slot: a run that died or failed is tried again

OWNER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class JobRow:
    id: int
    target: str
    kind: str
    command: str
    requested_by: str
    channel: str | None
    status: str
    owner: str | None
    message_ts: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    summary: str | None = None
    phase: str | None = None
    result: Any = None
    heartbeat_at: datetime | None = None
    cancel_requested_by: str | None = None  # who asked it to stop (`job cancel N`), read at its heartbeat
    cancel_requested_at: datetime | None = None


def state_database(named: str, dsn: str) -> str:
    """How a message names the state database: the variable the user set, and where it points."""
    why = ", as DBOPS_STATE_URL is not set" if named == "DATABASE_URL" else ""
    return f"the state database ({named}{why}: {describe_dsn(dsn)})"


class StateStore:
    def __init__(self, dsn: str, min_size: int = 1, max_size: int = 8, named: str = "DBOPS_STATE_URL") -> None:
        """`named`: the variable that gave `dsn` (Settings.state_url_env), for the messages."""
        import psycopg
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        self.dsn = dsn
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
                migrate.apply_migrations(conn)
        except psycopg.OperationalError as exc:
            raise TargetUnreachable(f"{state_database(named, dsn)} is unreachable: "
                                    f"{connection_reason(exc, dsn)}") from None
        except psycopg.Error as exc:
            raise ConfigError(f"cannot prepare {state_database(named, dsn)}: {connection_reason(exc, dsn)}") from None
        self.pool = ConnectionPool(dsn, min_size=min_size, max_size=max_size, open=True,
                                   kwargs={"autocommit": True, "row_factory": dict_row}, name="dbops-state")

    def close(self) -> None:
        self.pool.close()

    def reachable(self) -> bool:
        try:
            with self.pool.connection(timeout=3) as conn:
                conn.execute("SELECT 1")
            return True
        except Exception:
            return False

    # -- audit ---------------------------------------------------------------
    def audit(self, actor: str, action: str, outcome: str, *, channel: str | None = None,
              subcommand: str | None = None, target: str | None = None, duration_ms: int | None = None,
              detail: str | None = None) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO dbops.audit_log (actor, channel, action, subcommand, target, outcome, duration_ms, detail)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (actor, channel, action, subcommand, target, outcome, duration_ms, detail),
            )

    def audit_entries(self, limit: int = 50) -> list[dict]:
        with self.pool.connection() as conn:
            return conn.execute("SELECT * FROM dbops.audit_log ORDER BY id DESC LIMIT %s", (limit,)).fetchall()

    def import_audit(self, entries) -> None:
        """Entries written elsewhere (the stand-in), kept with their own times, in one transaction."""
        columns = ("at", "actor", "channel", "action", "subcommand", "target", "outcome", "duration_ms", "detail")
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(f"INSERT INTO dbops.audit_log ({', '.join(columns)}) VALUES "
                            f"({', '.join(['%s'] * len(columns))})", [tuple(e[c] for c in columns) for e in entries])

    # -- jobs ----------------------------------------------------------------
    def update_job(self, job_id: int, **fields: Any) -> None:
        if not fields:
            return
        if "result" in fields and fields["result"] is not None:
            from psycopg.types.json import Jsonb

            fields["result"] = Jsonb(fields["result"])
        cols = ", ".join(f"{name} = %s" for name in fields)
        with self.pool.connection() as conn:
            conn.execute(f"UPDATE dbops.jobs SET {cols} WHERE id = %s", (*fields.values(), job_id))

    def finish_job(self, job_id: int, status: str, summary: str, result: Any = None) -> None:
        self.update_job(job_id, status=status, summary=summary, result=result, finished_at=datetime.now().astimezone())

    def start_job(self, target: str, kind: str, command: str, requested_by: str,
                  channel: str | None) -> tuple["JobLock | None", JobRow | None]:
        """Takes the (target, kind) lock and writes the job's row as one step.

        Returns (lock, job) when this caller may run, or (None, the running job) when another
        holds it; the other job may be None only when its row is already gone."""
        lock = JobLock(self.dsn, target, kind)
        conn = lock.connect()
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_JOB_SETUP_SPACE, lock.key))
                got = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s)) AS got",
                                   (_JOB_LOCK_SPACE, lock.key)).fetchone()["got"]
                alive = conn.execute(
                    "SELECT * FROM dbops.jobs WHERE target = %s AND kind = %s AND status IN ('queued', 'running')"
                    " AND heartbeat_at > now() - make_interval(secs => %s) ORDER BY id DESC LIMIT 1",
                    (target, kind, STALE_AFTER_S)).fetchone()
                if not got or alive is not None:
                    # Free lock beside a fresh heartbeat: that job's lock connection dropped and
                    # its heartbeat is about to take the lock back.
                    if got:
                        conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (_JOB_LOCK_SPACE, lock.key))
                    if alive is None:
                        alive = conn.execute(
                            "SELECT * FROM dbops.jobs WHERE target = %s AND kind = %s AND status IN"
                            " ('queued', 'running') ORDER BY id DESC LIMIT 1", (target, kind)).fetchone()
                    conn.close()
                    return None, _job_row(alive) if alive else None
                row = conn.execute(
                    "INSERT INTO dbops.jobs (target, kind, command, requested_by, channel, status, owner,"
                    " started_at, heartbeat_at) VALUES (%s, %s, %s, %s, %s, 'running', %s, now(), now())"
                    " RETURNING *", (target, kind, command, requested_by, channel, OWNER)).fetchone()
        except Exception:
            conn.close()
            raise
        lock.conn = conn
        return lock, _job_row(row)

    def beat(self, lock: "JobLock", job_id: int) -> str | bool:
        """The job's heartbeat: keeps its lock (re-taken after a dropped connection) and its
        heartbeat_at fresh. False when the lock is lost to another process; the name of whoever
        asked the job to stop (`request_cancel`), once someone has."""
        import psycopg

        if not lock.keep():
            return False
        try:
            assert lock.conn is not None
            row = lock.conn.execute("UPDATE dbops.jobs SET heartbeat_at = now() WHERE id = %s"
                                    " RETURNING cancel_requested_by", (job_id,)).fetchone()
        except psycopg.Error:
            return True  # the lock connection dropped just now; the next beat re-takes it
        return (row or {}).get("cancel_requested_by") or True

    def request_cancel(self, job_id: int, by: str) -> JobRow | None:
        """Asks a queued or running job to stop; its process reads it at the next heartbeat. None when
        the job is not running (any more)."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "UPDATE dbops.jobs SET cancel_requested_by = coalesce(cancel_requested_by, %s),"
                " cancel_requested_at = coalesce(cancel_requested_at, now())"
                " WHERE id = %s AND status IN ('queued', 'running') RETURNING *", (by, job_id)).fetchone()
        return _job_row(row) if row else None

    def running_jobs(self) -> list[JobRow]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT * FROM dbops.jobs WHERE status IN ('queued', 'running') ORDER BY id").fetchall()
        return [_job_row(r) for r in rows]

    def job(self, job_id: int) -> JobRow | None:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT * FROM dbops.jobs WHERE id = %s", (job_id,)).fetchone()
        return _job_row(row) if row else None

    def job_beats(self, command: str) -> bool:
        """Whether a job running `command` has a fresh heartbeat: its process is alive."""
        with self.pool.connection() as conn:
            return conn.execute("SELECT 1 FROM dbops.jobs WHERE command = %s AND status IN ('queued', 'running')"
                                " AND heartbeat_at > now() - make_interval(secs => %s)",
                                (command, STALE_AFTER_S)).fetchone() is not None

    def orphaned_jobs(self) -> list[JobRow]:
        """Jobs marked running whose lock nobody holds and whose heartbeat stopped: their process is gone.

        The lock is taken with the row written and released only after the row is final,
        and a live job beats every HEARTBEAT_S seconds (re-taking a lock whose connection
        dropped), so a free lock beside a stale heartbeat means a dead owner.
        """
        orphans = []
        for job in self.running_jobs():
            lock = JobLock(self.dsn, job.target, job.kind)
            if lock.try_acquire():
                try:
                    with self.pool.connection() as conn:
                        still = conn.execute(
                            "UPDATE dbops.jobs SET status = 'failed', finished_at = now(),"
                            " summary = 'interrupted: the process running it stopped (' || coalesce(owner, '?') || ')'"
                            " WHERE id = %s AND status IN ('queued', 'running')"
                            " AND coalesce(heartbeat_at, started_at, created_at) <= now() - make_interval(secs => %s)"
                            " RETURNING *", (job.id, STALE_AFTER_S)).fetchone()
                    if still:
                        orphans.append(_job_row(still))
                finally:
                    lock.release()
        return orphans

    # -- Slack work waiting for a worker ---------------------------------------
    def queue_work(self, command: str, requested_by: str, channel: str | None, slack_user: str | None) -> int:
        with self.pool.connection() as conn:
            return conn.execute("INSERT INTO dbops.queued_work (command, requested_by, channel, slack_user)"
                                " VALUES (%s, %s, %s, %s) RETURNING id",
                                (command, requested_by, channel, slack_user)).fetchone()["id"]

    def beat_queued(self, work_ids: list[int]) -> None:
        with self.pool.connection() as conn:
            conn.execute("UPDATE dbops.queued_work SET beat_at = now() WHERE id = ANY(%s)", (work_ids,))

    def unqueue(self, work_id: int) -> bool:
        """True for the one caller that removes the row: the worker starting the work, or whoever
        tells its requester that it will not run."""
        with self.pool.connection() as conn:
            return conn.execute("DELETE FROM dbops.queued_work WHERE id = %s RETURNING id",
                                (work_id,)).fetchone() is not None

    def abandoned_work(self, stale_after_s: float) -> list[dict]:
        """Queued work whose process stopped beating (it was killed): removed, to be told once."""
        with self.pool.connection() as conn:
            return conn.execute("DELETE FROM dbops.queued_work"
                                " WHERE beat_at <= now() - make_interval(secs => %s) RETURNING *",
                                (stale_after_s,)).fetchall()

    # -- schedules -----------------------------------------------------------
    def claim(self, schedule: str, slot: str, retry_after_s: float = 900) -> int | None:
        """The attempt number for exactly one caller per (schedule, slot), whatever the number of
        replicas; None when the slot is taken. A slot whose run failed (retry_after_s ago) or whose
        process died (no heartbeat) is handed out again, up to SCHEDULE_ATTEMPTS tries."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO dbops.schedule_claims AS c (schedule, slot, claimed_by) VALUES (%s, %s, %s)"
                " ON CONFLICT (schedule, slot) DO UPDATE SET claimed_by = EXCLUDED.claimed_by,"
                " claimed_at = now(), attempts = c.attempts + 1, finished_at = NULL, outcome = NULL, detail = NULL"
                " WHERE c.attempts < %s AND ("
                "   (c.outcome = 'failed' AND c.finished_at <= now() - make_interval(secs => %s))"
                "   OR (c.outcome IS NULL AND c.claimed_at <= now() - make_interval(secs => %s)))"
                " RETURNING attempts",
                (schedule, slot, OWNER, SCHEDULE_ATTEMPTS, retry_after_s, STALE_AFTER_S)).fetchone()
        return row["attempts"] if row else None

    def beat_claim(self, schedule: str, slot: str) -> None:
        """A running scheduled run's heartbeat: its claim stays taken while this is fresh."""
        with self.pool.connection() as conn:
            conn.execute("UPDATE dbops.schedule_claims SET claimed_at = now() WHERE schedule = %s AND slot = %s"
                         " AND outcome IS NULL AND claimed_by = %s", (schedule, slot, OWNER))

    def finish_claim(self, schedule: str, slot: str, outcome: str, detail: str = "") -> None:
        with self.pool.connection() as conn:
            conn.execute("UPDATE dbops.schedule_claims SET finished_at = now(), outcome = %s, detail = %s"
                         " WHERE schedule = %s AND slot = %s", (outcome, detail[:500], schedule, slot))


def _job_row(row: dict) -> JobRow:
    return JobRow(**row)


class JobLock:
    """pg_try_advisory_lock on a dedicated connection, held until release()."""

    def __init__(self, dsn: str, target: str, kind: str) -> None:
        self.dsn, self.target, self.kind = dsn, target, kind
        self.conn: psycopg.Connection | None = None
        self.lost = False
        self._last_held = time.monotonic()

    @property
    def key(self) -> str:
        return f"{self.target}:{self.kind}"

    def connect(self) -> psycopg.Connection:
        import psycopg
        from psycopg.rows import dict_row

        # keepalives: a cut connection is noticed by the heartbeat instead of hanging it
        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=10, keepalives=1, row_factory=dict_row,
                               keepalives_idle=30, keepalives_interval=10, keepalives_count=3)

    def try_acquire(self) -> bool:
        conn = self.connect()
        got = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s)) AS got",
                           (_JOB_LOCK_SPACE, self.key)).fetchone()["got"]
        if got:
            self.conn = conn
        else:
            conn.close()
        return bool(got)

    def keep(self) -> bool:
        """True while this process holds the lock; a dropped connection is replaced and the lock
        taken again. False (for good) once another process has taken it meanwhile."""
        import psycopg

        if self.lost:
            return False
        if self.conn is not None:
            try:
                self.conn.execute("SELECT 1")
                self._last_held = time.monotonic()
                return True
            except psycopg.Error:
                try:
                    self.conn.close()
                except Exception:
                    pass
                self.conn = None
        try:
            if self.try_acquire():
                self._last_held = time.monotonic()
                return True
        except psycopg.Error:
            # Unreachable from here: others count this job dead only once its heartbeat is
            # STALE_AFTER_S old, so it gives the lock up well before that.
            if time.monotonic() - self._last_held < 2 * HEARTBEAT_S:
                return True
        self.lost = True
        return False

    def release(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()  # closing the session releases its advisory locks
            finally:
                self.conn = None
