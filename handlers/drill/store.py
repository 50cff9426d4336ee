"""Drills in the state store (dbops.drills): record, history with a trend, written reports, the alarm."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from .. import fmt
from ..errors import UsageError
from ..report import Outcome, Report, Section, Table
from ..target import connect
from .result import DrillResult
from .settings import DrillSettings

_ID = re.compile(r"^d(\d+)$")
TREND_OVER = 30  # drills in the recovery-time trend of `drill history`


def drill_id(number: int) -> str:
    return f"d{number:03d}"


def parse_drill_id(text: str) -> int:
    match = _ID.match(str(text).strip().lower())
    if not match:
        raise UsageError(f"`{text}` is not a drill id; drill ids look like d007 (see `drill history`)")
    return int(match.group(1))


class DrillStore:
    def __init__(self, state_dsn: str) -> None:
        self.dsn = state_dsn

    def _conn(self) -> psycopg.Connection:
        return connect(self.dsn, name="state database", autocommit=True, row_factory=dict_row)

    def record(self, target_name: str, backup_id: str, result: DrillResult, requested_by: str) -> str:
        """Store a finished drill; returns its id (d007), also set on `result.drill_id`."""
        with self._conn() as conn:
            row = conn.execute(
                """INSERT INTO dbops.drills (target, backup_id, requested_by, started_at, finished_at, outcome,
                                             instance_kind, recovery_point_age_s, total_s, summary, result)
                   VALUES (%s, %s, %s, to_timestamp(%s), to_timestamp(%s), %s, %s, %s, %s, %s, '{}')
                   RETURNING id""",
                (target_name, backup_id, requested_by, result.started_at, result.finished_at or result.started_at,
                 result.outcome, result.instance_kind, result.recovery_point_age_s, result.total_s,
                 result.summary)).fetchone()
            result.drill_id = drill_id(row["id"])
            conn.execute("UPDATE dbops.drills SET result = %s WHERE id = %s", (Jsonb(result.to_dict()), row["id"]))
        return result.drill_id

    def get(self, drill: str) -> DrillResult:
        number = parse_drill_id(drill)
        with self._conn() as conn:
            row = conn.execute("SELECT result FROM dbops.drills WHERE id = %s", (number,)).fetchone()
        if row is None:
            raise UsageError(f"there is no drill {drill_id(number)}; `drill history` lists the drills")
        result = DrillResult.from_dict(row["result"])
        result.drill_id = drill_id(number)
        return result

    def report_markdown(self, drill: str) -> str:
        return self.get(drill).to_markdown()

    def recent(self, target_name: str, limit: int = 10) -> list[dict[str, Any]]:
        with self._conn() as conn:
            return conn.execute(
                """SELECT id, backup_id, started_at, outcome, recovery_point_age_s, total_s, summary,
                          result -> 'steps' AS steps
                   FROM dbops.drills WHERE target = %s ORDER BY started_at DESC, id DESC LIMIT %s""",
                (target_name, limit)).fetchall()

    def last_passed(self, target_name: str) -> dict[str, Any] | None:
        """The latest passed drill: drill_id, backup_id, finished_at, total_s, recovery_point_age_s; or None."""
        with self._conn() as conn:
            row = conn.execute(
                """SELECT id, backup_id, finished_at, total_s, recovery_point_age_s FROM dbops.drills
                   WHERE target = %s AND passed ORDER BY finished_at DESC LIMIT 1""", (target_name,)).fetchone()
        if row is None:
            return None
        return {"drill_id": drill_id(row["id"]), "backup_id": row["backup_id"], "finished_at": row["finished_at"],
                "total_s": row["total_s"], "recovery_point_age_s": row["recovery_point_age_s"]}

    def history(self, target_name: str, limit: int = 10, prefix: str = "dbops") -> Report:
        """The last `limit` drills, newest first, and the trend of recovery time over the last 30;
        `prefix` is how the reader types a command, for naming the next one when none has run."""
        recent = self.recent(target_name, max(limit, TREND_OVER))
        rows = recent[:limit]
        if not rows:
            run = f"{prefix} drill" + (f" --target {target_name}" if target_name != "prod" else "")
            return Report(f"Restore drills: {target_name}",
                          f"No restore drill has run on {target_name} yet. Run one: `{run}`",
                          data={"target": target_name, "drills": [], "trend": ""})
        table_rows, data = [], []
        for r in rows:
            steps = {s["step"]: s for s in (r["steps"] or [])}

            def took(name: str) -> str:
                s = steps.get(name)
                return "-" if s is None or s["outcome"] == "skipped" else fmt.duration(s["seconds"])

            # The instance's deletion is left out here (it is in the JSON and the report): the row fits 100 columns.
            table_rows.append([drill_id(r["id"]), fmt.when(r["started_at"]), r["outcome"], r["backup_id"],
                               fmt.duration(r["recovery_point_age_s"]), fmt.duration(r["total_s"]), took("restore"),
                               took("verify"), took("create instance")])
            data.append({"drill_id": drill_id(r["id"]), "started_at": r["started_at"].isoformat(),
                         "backup_id": r["backup_id"], "recovery_point_age_s": r["recovery_point_age_s"],
                         "steps": {k: v["seconds"] for k, v in steps.items()}, "total_s": r["total_s"],
                         "outcome": r["outcome"]})
        # Recovery time is what a passed drill took: a failed one stopped early and would read as fast.
        totals = [r["total_s"] for r in reversed(recent) if r["outcome"] == "passed"] or \
                 [r["total_s"] for r in reversed(recent)]
        trend = fmt.sparkline(totals)
        passed = sum(1 for r in rows if r["outcome"] == "passed")
        which = "passed drill" if any(r["outcome"] == "passed" for r in recent) else "drill"
        summary = (f"Last {fmt.plural(len(rows), 'drill')} of {target_name}: {passed} passed, "
                   f"{len(rows) - passed} not.\n"  # the trend on a line of its own: never at the end of a full one
                   f"Recovery time of the last {fmt.plural(len(totals), which)}, oldest to newest: "
                   f"{fmt.trend(totals, fmt.duration)}.")
        latest_ok = rows[0]["outcome"] == "passed"
        return Report(
            f"Restore drills: {target_name}", summary, Outcome.OK if latest_ok else Outcome.FAILED,
            sections=[Section("Drills", table=Table(
                ["id", "when", "result", "backup", "its age", "total", "restore", "verify", "instance"],
                table_rows))],
            data={"target": target_name, "drills": data, "trend": trend})


def drill_alarm(state_dsn: str, target_name: str, settings: DrillSettings,
                now: datetime | None = None, prefix: str = "dbops") -> tuple[bool, str]:
    """(ok, one line for `/db status` and the digest): has a drill passed within drill.max_age_days,
    and did the newest one pass? A failing newest drill is a problem even after a recent pass.
    `prefix` is how the reader types a command, for the one to run next."""
    now = now or datetime.now(timezone.utc)
    store = DrillStore(state_dsn)
    by_kind = _alarm_by_kind(state_dsn, target_name, settings.max_age_days, now, prefix)
    ok, line = by_kind if by_kind is not None else \
        _last_pass_line(store, target_name, settings.max_age_days, now, prefix)
    recent = store.recent(target_name, 5)
    if recent and recent[0]["outcome"] == "failed":
        streak = next((i for i, r in enumerate(recent) if r["outcome"] != "failed"), len(recent))
        newest = drill_id(recent[0]["id"])
        times = f"the last {streak} drills failed" if streak > 1 else "the last drill failed"
        return False, (f"{times} on {target_name} ({newest}: {recent[0]['summary']}; "
                       f"see `{prefix} drill report {newest}`); "
                       + line)
    return ok, line


def _last_pass_line(store: DrillStore, target_name: str, limit: int, now: datetime,
                    prefix: str) -> tuple[bool, str]:
    last = store.last_passed(target_name)
    run = f"{prefix} drill" + (f" --target {target_name}" if target_name != "prod" else "")
    if last is None:
        return False, (f"no restore drill has ever passed on {target_name}: run `{run}` "
                       f"(drill.max_age_days in dbops.toml asks for one at least every {limit} days)")
    age = (now - last["finished_at"]).total_seconds()
    ago = fmt.duration(max(0.0, age))
    if age > limit * 86400:
        return False, (f"no restore drill has passed on {target_name} in the last {limit} days "
                       f"(last pass: {last['drill_id']}, {ago} ago): run `{run}`")
    return True, (f"last restore drill passed {ago} ago ({last['drill_id']}, backup {last['backup_id']}, "
                  f"recovery time {fmt.duration(last['total_s'])})")


def schedule_report(settings: DrillSettings, now: datetime | None = None) -> Report:
    """`drill schedule`: when drills run by themselves and what the alarm waits for."""
    now = now or datetime.now(timezone.utc)
    nxt = settings.schedule.next_run(now)
    next_text = fmt.when(nxt) if nxt else "none (on demand only)"
    in_text = f" (in {fmt.duration((nxt - now).total_seconds())})" if nxt else ""
    rows = [["schedule", str(settings.schedule)], ["next run", next_text + in_text],
            ["alarm", f"when no drill has passed for {settings.max_age_days} days"],
            ["instance", settings.instance
             + (f" (${settings.scratch_url_env})" if settings.instance == "scratch" else "")],
            ["parallel restore jobs", str(settings.jobs)],
            ["pg_amcheck",
             ("on, heapallindexed" if settings.amcheck_heapallindexed else "on") if settings.amcheck else "off"],
            ["smoke queries", ", ".join(q.name for q in settings.smoke_queries) or "none configured"]]
    return Report("Restore drill schedule", f"Drills run {settings.schedule}; next: {next_text}{in_text}.",
                  sections=[Section("Schedule", table=Table(["setting", "value"], rows))],
                  data={"schedule": str(settings.schedule), "next_run": nxt.isoformat() if nxt else None,
                        "max_age_days": settings.max_age_days, "instance": settings.instance})


# Where a drill ran: the bot's own archives (local or scratch instances), a Render point-in-time
# recovery, or a Render export. Each kind proves something the others do not, so once more than one
# kind has run, each must keep passing on its own.
_KIND_GROUP = "CASE WHEN instance_kind IN ('render-pitr', 'render-export') THEN instance_kind ELSE 'local' END"


def _alarm_by_kind(state_dsn: str, target_name: str, limit: int, now: datetime,
                   prefix: str) -> tuple[bool, str] | None:
    """(ok, line) over each kind of drill, or None when only one kind has ever run."""
    kind_of_d = _KIND_GROUP.replace('instance_kind', 'd.instance_kind')
    with DrillStore(state_dsn)._conn() as conn:
        rows = conn.execute(
            f"""SELECT DISTINCT ON (kind) {_KIND_GROUP} AS kind, id, outcome,
                       (SELECT max(p.finished_at) FROM dbops.drills p
                        WHERE p.target = d.target AND p.passed AND
                              CASE WHEN p.instance_kind IN ('render-pitr', 'render-export') THEN p.instance_kind
                                   ELSE 'local' END = {kind_of_d}) AS last_pass
                FROM dbops.drills d WHERE target = %s ORDER BY kind, started_at DESC, id DESC""",
            (target_name,)).fetchall()
    if len(rows) < 2:
        return None
    ok, parts = True, []
    for r in rows:
        if r["outcome"] == "failed":
            ok = False
            parts.append(f"{r['kind']}: the last drill failed ({drill_id(r['id'])}; "
                         f"see `{prefix} drill report {drill_id(r['id'])}`)")
        elif r["last_pass"] is None:
            ok = False
            parts.append(f"{r['kind']}: never passed")
        else:
            age = (now - r["last_pass"]).total_seconds()
            if age > limit * 86400:
                ok = False
                parts.append(f"{r['kind']}: no pass in the last {limit} days (last {fmt.duration(age)} ago)")
            else:
                parts.append(f"{r['kind']}: last passed {fmt.duration(max(0.0, age))} ago")
    return ok, f"restore drills of {target_name}: " + "; ".join(parts)
