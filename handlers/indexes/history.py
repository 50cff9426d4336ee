"""Daily snapshots of index scan counters in the state store, and scans within a window.

Why snapshots: `pg_stat_user_indexes.idx_scan` only ever grows, from the last
statistics reset on. "Unused for 30 days" needs the counter 30 days ago too,
and a reset inside the window (pg_stat_reset, or a crash) zeroes it. So the
bot stores the counter once a day and counts scans in a window as the sum of
day-to-day differences; where the counter went down or the database's
`stats_reset` changed, the later value is what was scanned since the reset.
Scans between the last snapshot before a reset and the reset itself are lost
(at most one day's): the report says when a window holds a reset.

Why first-seen: PostgreSQL records no index creation time. The first snapshot
that saw an index (by OID and name: a dropped and recreated index gets a new
OID) stands in for it, so an index first seen less than a window ago is "too
young to judge", never "unused".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import psycopg
from psycopg.rows import dict_row, tuple_row

from ..target import connect
from . import system_catalog
from .model import IndexInfo, Usage

KEEP_DAYS = 400  # snapshots older than this are deleted when a new one is taken

IndexKey = tuple[int, str, str]  # (oid, schema, name)


def utc_now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    return now if now.tzinfo else now.replace(tzinfo=timezone.utc)


@dataclass
class Snapshot:
    target: str
    day: date
    indexes: int
    first_seen_now: int  # indexes this snapshot saw for the first time
    stats_reset: datetime | None


def take_snapshot(conn: psycopg.Connection, state_dsn: str, target_name: str, now: datetime | None = None) -> Snapshot:
    """Store today's (UTC) scan counters of every index; a second call the same day replaces the first."""
    now = utc_now(now)
    day = now.date()
    stats_reset, rows = system_catalog.index_counters(conn)
    with connect(state_dsn, name="state store") as state:
        with state.transaction():
            # The upsert locks the day's row: two replicas snapshotting at once take turns.
            state.execute(
                """INSERT INTO dbops.index_snapshot_days (target, day, taken_at, stats_reset)
                   VALUES (%s, %s, %s, %s)
                   ON CONFLICT (target, day) DO UPDATE SET taken_at = excluded.taken_at,
                                                           stats_reset = excluded.stats_reset""",
                (target_name, day, now, stats_reset),
            )
            state.execute("DELETE FROM dbops.index_snapshots WHERE target = %s AND day = %s", (target_name, day))
            with state.cursor().copy(
                "COPY dbops.index_snapshots (target, day, index_oid, schema_name, index_name, table_name, idx_scan)"
                " FROM STDIN"
            ) as copy:
                for r in rows:
                    copy.write_row((target_name, day, r["oid"], r["schema"], r["index_name"], r["table_name"],
                                    r["idx_scan"] or 0))
            # LEAST: a back-dated snapshot (a backfill) moves first-seen earlier, never later.
            new = state.execute(
                """WITH added AS (
                       INSERT INTO dbops.index_first_seen (target, index_oid, schema_name, index_name, first_seen)
                       SELECT target, index_oid, schema_name, index_name, %(now)s
                       FROM dbops.index_snapshots WHERE target = %(t)s AND day = %(day)s
                       ON CONFLICT (target, index_oid, schema_name, index_name)
                       DO UPDATE SET first_seen = LEAST(dbops.index_first_seen.first_seen, excluded.first_seen)
                       RETURNING (xmax = 0) AS inserted)
                   SELECT count(*) FILTER (WHERE inserted) FROM added""",
                {"now": now, "t": target_name, "day": day},
            ).fetchone()[0]
            state.execute("DELETE FROM dbops.index_snapshot_days WHERE target = %s AND day < %s",
                          (target_name, day - timedelta(days=KEEP_DAYS)))
    return Snapshot(target_name, day, len(rows), int(new), stats_reset)


@dataclass(slots=True)  # one per index in the snapshots
class _Stored:
    first_day: date
    scans: int  # sum of day-to-day differences from the first stored day on
    last_scan: int
    last_reset: datetime | None
    crossed_reset: bool


@dataclass
class WindowHistory:
    """What the snapshots say about one window: per index, scans since the baseline snapshot."""

    window_start: datetime
    baseline_day: date | None  # the snapshot the window's count starts from
    baseline_taken_at: datetime | None
    days: int  # snapshots in the window (baseline included)
    resets: list[datetime] = field(default_factory=list)  # statistics resets seen inside the window
    stored: dict[IndexKey, _Stored] = field(default_factory=dict)
    first_seen: dict[IndexKey, datetime] = field(default_factory=dict)
    state_queries: int = 0

    @property
    def complete(self) -> bool:
        return self.baseline_taken_at is not None and self.baseline_taken_at <= self.window_start

    def is_young(self, index: IndexInfo) -> bool:
        """Younger than the window, or never seen by a snapshot (age unknown: not judged either)."""
        seen = self.first_seen.get(index.ident)
        return seen is None or seen > self.window_start

    def usage(self, index: IndexInfo, live_reset: datetime | None, now: datetime) -> Usage:
        stored = self.stored.get(index.ident)
        live = index.idx_scan
        if stored is None or live is None:
            return Usage(scans=None, complete=False)
        since_reset = stored.crossed_reset
        if live < stored.last_scan or live_reset != stored.last_reset:
            live_delta, since_reset = live, True  # reset since the last snapshot: all of `live` is new
        else:
            live_delta = live - stored.last_scan
        if stored.first_day == self.baseline_day:
            complete, start = self.complete, self.baseline_taken_at
        else:
            complete, start = False, datetime.combine(stored.first_day, datetime.min.time(), timezone.utc)
        return Usage(stored.scans + live_delta, complete, (now - start).total_seconds() / 86400, since_reset)


def window_history(state_dsn: str, target_name: str, now: datetime, window_days: int,
                   live_reset: datetime | None) -> WindowHistory:
    """Read the snapshots that cover [now - window, now] in three state-store queries."""
    window_start = now - timedelta(days=window_days)
    with connect(state_dsn, name="state store", row_factory=dict_row) as state:
        days = state.execute(
            "SELECT day, taken_at, stats_reset FROM dbops.index_snapshot_days"
            " WHERE target = %s AND taken_at <= %s ORDER BY day",
            (target_name, now),
        ).fetchall()
        before = [d for d in days if d["taken_at"] <= window_start]
        inside = [d for d in days if d["taken_at"] > window_start]
        baseline = before[-1] if before else (inside[0] if inside else None)
        history = WindowHistory(window_start=window_start, baseline_day=baseline["day"] if baseline else None,
                                baseline_taken_at=baseline["taken_at"] if baseline else None,
                                days=0, state_queries=1)
        if baseline is None:
            return history
        used = [d for d in days if d["day"] >= baseline["day"]]
        history.days = len(used)
        resets = [b["stats_reset"] for a, b in zip(used, used[1:]) if b["stats_reset"] != a["stats_reset"]]
        if used[-1]["stats_reset"] != live_reset:
            resets.append(live_reset)
        history.resets = [r for r in resets if r is not None]
        # One row per index (tens of thousands): tuples, not dicts.
        rows = state.cursor(row_factory=tuple_row).execute(
            """WITH s AS (
                   SELECT s.index_oid, s.schema_name, s.index_name, s.day, s.idx_scan, d.stats_reset,
                          lag(s.idx_scan) OVER w AS prev_scan, lag(d.stats_reset) OVER w AS prev_reset,
                          lag(s.day) OVER w AS prev_day
                   FROM dbops.index_snapshots s
                   JOIN dbops.index_snapshot_days d ON d.target = s.target AND d.day = s.day
                   WHERE s.target = %(t)s AND s.day >= %(base)s AND d.taken_at <= %(now)s
                   WINDOW w AS (PARTITION BY s.index_oid, s.schema_name, s.index_name ORDER BY s.day))
               SELECT index_oid, schema_name, index_name, min(day) AS first_day,
                      sum(CASE WHEN prev_day IS NULL THEN 0
                               WHEN idx_scan < prev_scan OR stats_reset IS DISTINCT FROM prev_reset THEN idx_scan
                               ELSE idx_scan - prev_scan END)::bigint AS scans,
                      (array_agg(idx_scan ORDER BY day DESC))[1] AS last_scan,
                      (array_agg(stats_reset ORDER BY day DESC))[1] AS last_reset,
                      coalesce(bool_or(prev_day IS NOT NULL AND (idx_scan < prev_scan
                               OR stats_reset IS DISTINCT FROM prev_reset)), false) AS crossed_reset
               FROM s GROUP BY index_oid, schema_name, index_name""",
            {"t": target_name, "base": baseline["day"], "now": now},
        ).fetchall()
        history.stored = {(oid, schema, name): _Stored(*rest) for oid, schema, name, *rest in rows}
        history.first_seen = {(oid, schema, name): seen for oid, schema, name, seen in state.cursor(
            row_factory=tuple_row).execute(
            "SELECT index_oid, schema_name, index_name, first_seen FROM dbops.index_first_seen WHERE target = %s",
            (target_name,)).fetchall()}  # fetchall: a cursor read row by row costs a call per row
        history.state_queries = 3
    return history
