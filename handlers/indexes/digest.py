"""The daily digest's content: a headline, what changed since the previous digest, extra lines.

The lead's scheduler decides when to post; `claim_digest` makes sure that of
several replicas exactly one posts a given day's digest for a target.
`build_digest` compares today's review with the state the previous digest
stored (dbops.digest_states) and stores today's for tomorrow.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Callable

from psycopg.types.json import Jsonb

from .. import fmt
from ..report import Outcome, Report, Section
from ..target import connect
from .history import utc_now
from .review import IndexReview

_NEW = {
    "expected": "expected index now {status}: {label}",
    "unused": "newly unused: {label}",
    "invalid": "new invalid index: {label}",
    "duplicate": "new duplicate: {label}",
    "foreign_key": "new foreign key without index: {label}",
    "seq_scan": "newly read by sequential scans: {label}",
}
_ORDER = ["expected", "invalid", "unused", "duplicate", "foreign_key", "seq_scan"]
TREND_DAYS = 30  # digests in the trend of the number of problems


def claim_digest(state_dsn: str, target_name: str, day: date, claimed_by: str | None = None) -> bool:
    """True for exactly one caller per (target, day): that caller posts the digest."""
    who = claimed_by or f"{socket.gethostname()}:{os.getpid()}"
    with connect(state_dsn, name="state store", autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO dbops.digest_claims (target, day, claimed_by) VALUES (%s, %s, %s)"
            " ON CONFLICT (target, day) DO NOTHING RETURNING 1",
            (target_name, day, who),
        ).fetchone()
    return row is not None


@dataclass
class Digest:
    target: str
    created_at: datetime
    problems: int
    headline: str  # "all good" or "N problems: ..."
    previous_at: datetime | None  # None: the first digest for this target
    changes: list[str] = field(default_factory=list)
    extra_lines: list[str] = field(default_factory=list)
    problem_counts: list[int] = field(default_factory=list)  # per digest, oldest first, today's last
    index_lines: list[str] = field(default_factory=list)  # suggested indexes: the last suggestions, applied ones

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def change_line(self) -> str:
        if self.previous_at is None:
            return "first digest for this target: nothing earlier to compare with"
        if not self.changes:
            return f"no change since {self.previous_at:%Y-%m-%d}"
        return f"{fmt.plural(len(self.changes), 'change')} since {self.previous_at:%Y-%m-%d}"

    def trend_line(self) -> str | None:
        """The number of problems over the last digests, when it moved: a count creeping up over weeks
        is easier to see than to read from each day's changes. A flat line says nothing the headline
        does not, so quiet days stay short."""
        counts = self.problem_counts
        if len(counts) < 2 or min(counts) == max(counts):
            return None
        return (f"Problems per digest, last {len(counts)}: "
                f"{fmt.trend(counts, lambda n: f'{int(n):,}')}, oldest to newest")

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "created_at": self.created_at.isoformat(), "problems": self.problems,
                "headline": self.headline, "previous_at": self.previous_at.isoformat() if self.previous_at else None,
                "changes": self.changes, "extra": self.extra_lines, "problem_counts": self.problem_counts,
                "suggested_indexes": self.index_lines}

    def to_report(self) -> Report:
        # Quiet days stay short: one line for "no change", then the extra lines.
        text = self.change_line()
        if self.changes:
            text += ":\n" + "\n".join(f"• {c}" for c in self.changes)
        sections = [Section("Since the previous digest", text=text)]
        trend = self.trend_line()
        if trend:
            sections.append(Section("Trend", text=trend))
        if self.index_lines:
            sections.append(Section("Missing indexes (indexes suggest)", text="\n".join(self.index_lines)))
        if self.extra_lines:
            sections.append(Section("Backups and drills", text="\n".join(self.extra_lines)))
        return Report(
            title=f"Daily database digest: {self.target}",
            summary=self.headline,
            outcome=Outcome.FAILED if self.problems else Outcome.OK,
            sections=sections,
            data=self.to_json(),
        )


def digest_state(review: IndexReview) -> dict[str, Any]:
    """What the next digest compares with: problem keys with labels, and slow-query means."""
    labels: dict[str, str] = {}
    for r in review.expected_problems:
        labels[f"{r.expected.key}: {r.status}"] = f"{r.expected.table}({', '.join(r.expected.columns)})"
    for f in review.open_findings:
        labels[f.key] = f.summary
    slow = {q["queryid"]: {"mean_ms": q["mean_ms"], "query": q["query"][:120]} for q in review.slow.rows}
    return {"problems": review.problems, "keys": review.problem_keys(), "labels": labels, "slow": slow}


def compare(previous: dict[str, Any], current: dict[str, Any], factor: float, min_ms: float) -> list[str]:
    changes: list[str] = []
    before_keys, now_keys = previous.get("keys", {}), current["keys"]
    labels = {**previous.get("labels", {}), **current["labels"]}
    for check in _ORDER:
        new = sorted(set(now_keys.get(check, [])) - set(before_keys.get(check, [])))
        for key in new:
            status = key.rsplit(": ", 1)[-1] if check == "expected" else ""
            changes.append(_NEW[check].format(label=labels.get(key, key), status=status))
    for check in _ORDER:
        for key in sorted(set(before_keys.get(check, [])) - set(now_keys.get(check, []))):
            what = labels.get(key, key)
            changes.append(f"resolved: {what}" + (f" ({key.rsplit(': ', 1)[-1]})" if check == "expected" else ""))
    before_slow = previous.get("slow", {})
    for queryid, now in current["slow"].items():
        was = before_slow.get(queryid)
        if was and now["mean_ms"] >= was["mean_ms"] * factor and now["mean_ms"] - was["mean_ms"] >= min_ms:
            changes.append(f"slow-query regression: mean {was['mean_ms']:.1f} → {now['mean_ms']:.1f} ms: "
                           f"{now['query']}")
    return changes


# Given the previous digest's state of the suggested indexes: (lines for today, today's state).
IndexFollowUp = Callable[[dict[str, Any]], tuple[list[str], dict[str, Any]]]


def build_digest(state_dsn: str, target_name: str, review: IndexReview, extra_lines: list[str],
                 now: datetime | None = None, indexes: IndexFollowUp | None = None) -> Digest:
    now = utc_now(now)
    current = digest_state(review)
    index_lines: list[str] = []
    with connect(state_dsn, name="state store") as conn:
        with conn.transaction():
            row = conn.execute(
                "SELECT created_at, state FROM dbops.digest_states WHERE target = %s AND created_at < %s"
                " ORDER BY created_at DESC LIMIT 1",
                (target_name, now),
            ).fetchone()
            earlier = conn.execute(
                "SELECT problems FROM dbops.digest_states WHERE target = %s AND created_at < %s"
                " ORDER BY created_at DESC LIMIT %s",
                (target_name, now, TREND_DAYS - 1),
            ).fetchall()
            if indexes is not None:
                before = (row[1] if row else {}).get("suggested_indexes", {})
                index_lines, current["suggested_indexes"] = indexes(before)
            conn.execute(
                "INSERT INTO dbops.digest_states (target, created_at, problems, state) VALUES (%s, %s, %s, %s)",
                (target_name, now, review.problems, Jsonb(current)),
            )
    previous_at, previous = (row[0], row[1]) if row else (None, None)
    changes = [] if previous is None else compare(
        previous, current, review.settings.slow_query_regression_factor, review.settings.slow_query_regression_min_ms)
    return Digest(target=target_name, created_at=now, problems=review.problems, headline=review.summary_line(),
                  previous_at=previous_at, changes=changes, extra_lines=list(extra_lines),
                  problem_counts=[r[0] for r in reversed(earlier)] + [review.problems], index_lines=index_lines)
