"""After a suggested index is applied, the digest follows it: is it used (its scans), did its
statements' mean time drop as the copy predicted, and is it still young for the unused check.

The mean since the index came is the difference of pg_stat_statements' counters (calls, total time)
from a baseline taken while it did not exist yet: the counters recorded with the request, then those
each digest records while the request waits; frozen once it is applied."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from ... import fmt
from ...report import Level, Note
from .. import system_catalog
from ..checks import slow_queries
from ..system_catalog import TAG, SystemCatalog
from .result import short
from .workload import pgss_columns

FOLLOW_DAYS = 90  # an applied suggestion is followed this long


@dataclass(frozen=True)
class Followed:
    """A migration request made from a suggestion: its `advice` is what the request stored."""

    code: str
    status: str  # the request's: pending, approved, applying, applied, failed, ...
    applied_at: datetime | None
    advice: dict[str, Any]


def follow_up(conn: psycopg.Connection, followed: list[Followed], previous: dict[str, Any], now: datetime,
              window_days: int) -> tuple[list[Note], dict[str, Any]]:
    """(digest lines, a warning for an index not found, invalid or unused; the state the next digest
    compares with), in two queries on the target."""
    live = [f for f in followed if f.status in ("pending", "approved", "applying")
            or (f.status == "applied" and f.applied_at and now - f.applied_at <= timedelta(days=FOLLOW_DAYS))]
    if not live:
        return [], {}
    cat = SystemCatalog(conn)
    env = system_catalog.environment(cat)
    usage = index_usage(cat, [(f.advice["schema"], f.advice["name"]) for f in live])
    counters = statement_counters(cat, env.pgss_schema, [q["queryid"] for f in live for q in f.advice["queries"]])
    lines, state = [], {}
    for f in live:
        name, before = f.advice["name"], previous.get(f.code) or {}
        if f.status != "applied":
            state[f.code] = {"baseline": {q: counters[q] for q in _queryids(f) if q in counters},
                             "at": now.isoformat()}
            lines.append(Note(Level.INFO,
                              f"{name} (`{f.code}`): requested, {f.status}; not on `{f.advice['table']}` yet"))
            continue
        baseline = before.get("baseline") or {q["queryid"]: [q["calls"], q["total_ms"]] for q in f.advice["queries"]}
        since = before.get("at") or f.advice.get("requested_at")
        state[f.code] = {"baseline": baseline, "at": since}
        lines.append(_applied_line(f, usage.get((f.advice["schema"], name)), baseline, since, counters, now,
                                   window_days))
    return lines, state


def _queryids(f: Followed) -> list[str]:
    return [q["queryid"] for q in f.advice["queries"]]


def _applied_line(f: Followed, use: tuple[int, bool] | None, baseline: dict[str, list], since: str | None,
                  counters: dict[str, list], now: datetime, window_days: int) -> Note:
    name = f.advice["name"]
    head = f"{name} (`{f.code}`, applied {f.applied_at:%Y-%m-%d})"
    if use is None:
        return Note.warning(f"{head}: not found on `{f.advice['table']}` any more")
    scans, valid = use
    parts = [f"{fmt.plural(scans, 'scan')} so far" if scans else "not used yet (0 scans)"]
    if not valid:
        parts.insert(0, "INVALID")
    for q in f.advice["queries"]:
        predicted = q.get("predicted_ms")
        now_ms = _mean_since(baseline.get(q["queryid"]), counters.get(q["queryid"]))
        what = short(q["query"], 60)
        if now_ms is None:
            parts.append(f"{what}: no calls since {fmt.when_written(since) if since else 'it was applied'}")
        elif predicted is not None:
            parts.append(f"{what}: predicted {predicted:.2f} ms, production now {now_ms:.2f} ms "
                         f"(was {q['production_mean_ms']:.2f} ms)")
        else:
            parts.append(f"{what}: production now {now_ms:.2f} ms (was {q['production_mean_ms']:.2f} ms)")
    if f.applied_at and now - f.applied_at < timedelta(days=window_days):
        parts.append(f"young: the unused check judges it from {f.applied_at + timedelta(days=window_days):%Y-%m-%d}")
    return Note(Level.INFO if scans and valid else Level.WARNING, f"{head}: " + "; ".join(parts))


def _mean_since(baseline: list | None, current: list | None) -> float | None:
    if not current:
        return None
    calls, total = current
    if baseline and calls >= baseline[0]:
        calls, total = calls - baseline[0], total - baseline[1]
    return total / calls if calls > 0 else None  # counters below the baseline: reset since, all of them count


def index_usage(cat: SystemCatalog, indexes: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, bool]]:
    """(scans since the statistics reset, valid) of each named index that exists."""
    rows = cat.rows(
        f"""SELECT {TAG} n.nspname AS schema, c.relname AS name, coalesce(s.idx_scan, 0) AS scans,
                  i.indisvalid AS valid
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.indexrelid
           WHERE (n.nspname::text, c.relname::text) IN
                 (SELECT * FROM unnest(%(schemas)s::text[], %(names)s::text[]))""",
        {"schemas": [s for s, _ in indexes], "names": [n for _, n in indexes]})
    return {(r["schema"], r["name"]): (int(r["scans"]), bool(r["valid"])) for r in rows}


def statement_counters(cat: SystemCatalog, schema: str | None, queryids: list[str]) -> dict[str, list]:
    """[calls, total ms] of each statement, by queryid; {} when pg_stat_statements cannot be read."""
    if schema is None or not queryids:
        return {}
    try:
        total = slow_queries.choose_columns(pgss_columns(cat, schema))["total_ms"]
    except LookupError:
        return {}
    query = sql.SQL(
        "SELECT {tag} s.queryid::text AS queryid, sum(s.calls) AS calls, sum(s.{total}) AS total_ms"
        " FROM {schema}.pg_stat_statements s"
        " WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND s.queryid::text = ANY(%(ids)s) GROUP BY s.queryid").format(
        tag=sql.SQL(TAG), total=sql.Identifier(total), schema=sql.Identifier(schema))
    try:
        with cat.conn.transaction():
            rows = cat.rows(query.as_string(cat.conn), {"ids": queryids})
    except (psycopg.errors.ObjectNotInPrerequisiteState, psycopg.errors.InsufficientPrivilege):
        return {}
    return {r["queryid"]: [int(r["calls"]), float(r["total_ms"])] for r in rows}
