"""The bot's memory in schema `dbops`: jobs, the audit log, schedule claims.

`JobLock` is the one-job-per-(target, kind) rule: a session advisory lock held
on its own connection for the whole job, so it holds across replicas and is
released by PostgreSQL itself when a process dies.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from handlers.errors import ConfigError, TargetUnreachable
from handlers.target import connection_reason

from . import migrate

_JOB_LOCK_SPACE = 0x6462_6F70  # "dbop": first key of the two-key advisory lock

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


class StateStore:
    def __init__(self, dsn: str, min_size: int = 1, max_size: int = 8) -> None:
        self.dsn = dsn
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
                migrate.apply_migrations(conn)
        except psycopg.OperationalError as exc:
            raise TargetUnreachable("the state database (DBOPS_STATE_URL, default DATABASE_URL) is unreachable: "
                                    f"{connection_reason(exc, dsn)}") from None
        except psycopg.Error as exc:
            raise ConfigError(f"cannot prepare the state store (DBOPS_STATE_URL): {connection_reason(exc, dsn)}") from None
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

    # -- jobs ----------------------------------------------------------------
    def create_job(self, target: str, kind: str, command: str, requested_by: str, channel: str | None) -> JobRow:
        with self.pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO dbops.jobs (target, kind, command, requested_by, channel, status, owner, started_at)"
                " VALUES (%s, %s, %s, %s, %s, 'running', %s, now()) RETURNING *",
                (target, kind, command, requested_by, channel, OWNER),
            ).fetchone()
        return JobRow(**row)

    def update_job(self, job_id: int, **fields: Any) -> None:
        if not fields:
            return
        if "result" in fields and fields["result"] is not None:
            fields["result"] = Jsonb(fields["result"])
        cols = ", ".join(f"{name} = %s" for name in fields)
        with self.pool.connection() as conn:
            conn.execute(f"UPDATE dbops.jobs SET {cols} WHERE id = %s", (*fields.values(), job_id))

    def finish_job(self, job_id: int, status: str, summary: str, result: Any = None) -> None:
        self.update_job(job_id, status=status, summary=summary, result=result, finished_at=datetime.now().astimezone())

    def running_job(self, target: str, kind: str) -> JobRow | None:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT * FROM dbops.jobs WHERE target = %s AND kind = %s AND status IN ('queued', 'running')"
                " ORDER BY id DESC LIMIT 1", (target, kind)).fetchone()
        return JobRow(**row) if row else None

    def running_jobs(self) -> list[JobRow]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT * FROM dbops.jobs WHERE status IN ('queued', 'running') ORDER BY id").fetchall()
        return [JobRow(**r) for r in rows]

    def job(self, job_id: int) -> JobRow | None:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT * FROM dbops.jobs WHERE id = %s", (job_id,)).fetchone()
        return JobRow(**row) if row else None

    def orphaned_jobs(self) -> list[JobRow]:
        """Jobs marked running whose lock nobody holds: the process that ran them is gone.

        The lock is taken before a job row is inserted and released only after
        the row is final, so a free lock beside a `running` row means a dead owner.
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
                            " WHERE id = %s AND status IN ('queued', 'running') RETURNING *", (job.id,)).fetchone()
                    if still:
                        orphans.append(JobRow(**still))
                finally:
                    lock.release()
        return orphans

    # -- schedules -----------------------------------------------------------
    def claim(self, schedule: str, slot: str) -> bool:
        """True for exactly one caller per (schedule, slot), whatever the number of replicas."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO dbops.schedule_claims (schedule, slot, claimed_by) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING RETURNING 1", (schedule, slot, OWNER)).fetchone()
        return row is not None


class JobLock:
    """pg_try_advisory_lock on a dedicated connection, held until release()."""

    def __init__(self, dsn: str, target: str, kind: str) -> None:
        self.dsn, self.target, self.kind = dsn, target, kind
        self.conn: psycopg.Connection | None = None

    def try_acquire(self) -> bool:
        conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
        got = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                           (_JOB_LOCK_SPACE, f"{self.target}:{self.kind}")).fetchone()[0]
        if got:
            self.conn = conn
        else:
            conn.close()
        return bool(got)

    def release(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()  # closing the session releases its advisory locks
            finally:
                self.conn = None
