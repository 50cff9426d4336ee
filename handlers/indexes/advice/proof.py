"""Proving candidates on the copy, once per candidate (no N+1 catalog queries):

1. each statement's plan cost before (a generic plan: any value of its `$n`; PostgreSQL 11 has no
   plan_cache_mode, so there the median over sampled real values);
2. every candidate built for real (timed: the build-time estimate), each statement planned again:
   a candidate the plan uses and that cuts the cost by `min_gain` is kept, the others are dropped
   and the kept ones' statements planned once more without them;
3. the kept statements that may run are measured with real values sampled from the copy:
   EXPLAIN (ANALYZE, BUFFERS), median time and shared buffers, with the indexes, then without them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...report import Progress, ProgressFn
from .candidates import Candidate, candidates_for, ef_core_name, existing_keys, longest
from .copy import AdviceCopy, CopyFailed
from .plans import execution_ms, median, sequential_rows, shared_buffers, total_cost, used_indexes
from .result import CONCURRENTLY_FACTOR, Measured, Served, Suggestion, Unhelped, short
from .settings import AdviceSettings
from .statements import Names, Skipped, Statement, read_statement
from .workload import StatementStats, Workload

CANDIDATE_PREFIX = "dbops_candidate_"
MOST_OF_THE_TABLE = 0.3  # a plan reading this share of a table sequentially: an index would not be cheaper
GENERIC_PLANS_FROM = 12  # plan_cache_mode = force_generic_plan


@dataclass
class Case:
    stats: StatementStats
    stmt: Statement
    samples: list[list[str | None]] | None = None
    before: dict[str, Any] | None = None
    cost_before: float | None = None
    cost_after: float | None = None
    used: set[str] = field(default_factory=set)
    candidates: list[Candidate] = field(default_factory=list)
    reason: str | None = None
    measured: tuple[Measured | None, Measured | None, str] = (None, None, "")

    @property
    def gain(self) -> float:
        if not self.cost_before or self.cost_after is None:
            return 0.0
        return 1 - self.cost_after / self.cost_before


@dataclass
class Built:
    candidate: Candidate
    name: str  # on the copy
    build_s: float
    size_bytes: int


@dataclass
class Proof:
    suggestions: list[Suggestion]
    unhelped: list[Unhelped]
    skipped: int
    candidates_built: int
    notes: list[str]


def prove(copy: AdviceCopy, workload: Workload, settings: AdviceSettings, progress: ProgressFn) -> Proof:
    names = Names({key: t.columns for key, t in workload.tables.items()}, workload.search_path)
    cases, skipped, notes = read_cases(workload, names, settings.statements)
    rows, distinct, sizes = copy.table_stats()
    generic = copy.major >= GENERIC_PLANS_FROM
    planned: list[Case] = []
    for case in cases:
        case.reason = obstacle(case.stmt, rows, settings.min_rows)
        if case.reason is None:
            planned.append(case)
    progress(Progress("suggest", 0.55, f"planning {len(planned)} statements on the copy"))
    for case in planned:
        plan_before(copy, case, generic, settings.samples)
    planned = [c for c in planned if c.reason is None]

    existing = existing_keys(workload.indexes)
    for case in planned:
        case.candidates = candidates_for(case.stmt, existing, rows, distinct, settings.min_rows)
    to_build = longest([c for case in planned for c in case.candidates])[: settings.max_candidates]
    built = build(copy, to_build, progress)
    progress(Progress("suggest", 0.75, f"planning again with {len(built)} candidate indexes"))
    kept = credit(copy, planned, built, generic, settings.min_gain)
    drop(copy, [built[n] for n in built if n not in kept])
    if len(kept) < len(built):  # without the dropped ones the planner may choose otherwise
        again = credit(copy, [c for c in planned if c.used], {n: built[n] for n in kept}, generic, settings.min_gain)
        drop(copy, [built[n] for n in kept - again])
        kept = again
    progress(Progress("suggest", 0.85, "measuring with real values"))
    measure_all(copy, [c for c in planned if c.used], [built[n] for n in kept], settings.samples)

    suggestions = suggest_from(workload, planned, [built[n] for n in kept], sizes)
    served = {q.queryid for s in suggestions for q in s.queries}
    unhelped = [Unhelped(c.stats.queryid, short(c.stmt.text), c.stats.calls_per_day, c.stats.share,
                         c.reason or why_not(c, rows, settings.min_gain))
                for c in cases if c.stats.queryid not in served]
    for schema, table in workload.seq_scanned:
        if not any(s.schema == schema and s.table == table for s in suggestions):
            notes.append(f"{table} is read mostly by sequential scans (the review's finding); no statement recorded "
                         "on it is helped by an index")
    return Proof(suggestions, unhelped, skipped, len(built), notes)


def read_cases(workload: Workload, names: Names, keep: int) -> tuple[list[Case], int, list[str]]:
    """The statements an index could serve: `keep` by total time and `keep` by mean time."""
    cases, skipped, notes = [], 0, []
    for stats in workload.statements:
        try:
            stmt = read_statement(stats.text, names)
        except Skipped:
            skipped += 1
            continue
        if not stmt.tables:  # the catalog, a function, VALUES: no table of the application
            skipped += 1
            continue
        cases.append(Case(stats, stmt))
    chosen = {id(c) for c in sorted(cases, key=lambda c: -c.stats.total_ms)[:keep]}
    chosen |= {id(c) for c in sorted(cases, key=lambda c: -c.stats.mean_ms)[:keep]}
    kept = [c for c in cases if id(c) in chosen]
    for case in kept:
        notes += [n for n in case.stmt.notes if n not in notes]
    return kept, skipped, notes


def obstacle(stmt: Statement, rows: dict[tuple[str, str], float], min_rows: int) -> str | None:
    """Why no index is tried for it at all."""
    if stmt.plannable is not None:
        return f"not planned on the copy: {stmt.plannable}"
    large = [t for t in stmt.tables if rows.get(t, 0) >= min_rows]
    if not large:
        table = stmt.tables[0]
        return f"table {table[1]} has {rows.get(table, 0):,.0f} rows: a sequential scan is cheap"
    if not any(u.table in large for u in stmt.uses):
        return "no filter, join or ORDER BY … LIMIT an index could serve: it reads whole tables"
    return None


def plan_before(copy: AdviceCopy, case: Case, generic: bool, samples: int) -> None:
    try:
        if case.stmt.runnable is None or not generic:
            case.samples = copy.sample(case.stmt, samples)
        case.before, case.cost_before = cost(copy, case, generic)
    except CopyFailed as failed:
        case.reason = f"could not be planned on the copy ({failed})"
    except _NoValues:
        case.reason = "its $n could not all be given real values to plan it with"


class _NoValues(Exception):
    pass


def cost(copy: AdviceCopy, case: Case, generic: bool) -> tuple[dict[str, Any], float]:
    """(the plan, its cost): the generic plan, else the median over the sampled values."""
    if generic:
        try:
            plan = copy.generic_plan(case.stmt)
            return plan, total_cost(plan)
        except CopyFailed as failed:
            if failed.sqlstate != "42P18" or not case.samples:  # 42P18: a $n's type cannot be inferred
                raise
    if not case.samples:
        raise _NoValues()
    plans = sorted((copy.plan(case.stmt, values) for values in case.samples), key=total_cost)
    chosen = plans[len(plans) // 2]
    return chosen, total_cost(chosen)


def build(copy: AdviceCopy, candidates: list[Candidate], progress: ProgressFn) -> dict[str, Built]:
    built = {}
    for n, candidate in enumerate(candidates, 1):
        name = f"{CANDIDATE_PREFIX}{n}"
        progress(Progress("suggest", 0.6 + 0.15 * n / max(len(candidates), 1), f"building {candidate.label}"))
        try:
            seconds, size = copy.create_index(name, candidate.table, candidate.columns)
        except CopyFailed:
            continue  # a type without a b-tree operator class, a timeout: not a candidate
        built[name] = Built(candidate, name, seconds, size)
    return built


def credit(copy: AdviceCopy, cases: list[Case], built: dict[str, Built], generic: bool,
           min_gain: float) -> set[str]:
    """Plan every case with the built candidates; the candidates that a case's cheaper plan uses."""
    kept: set[str] = set()
    for case in cases:
        case.used = set()
        try:
            plan, case.cost_after = cost(copy, case, generic)
        except (CopyFailed, _NoValues):
            continue
        used = used_indexes(plan) & set(built)
        if used and case.gain >= min_gain:
            case.used = used
            kept |= used
    return kept


def drop(copy: AdviceCopy, indexes: list[Built]) -> None:
    for b in indexes:
        copy.drop_index(b.candidate.table[0], b.name)


def measure_all(copy: AdviceCopy, cases: list[Case], kept: list[Built], samples: int) -> None:
    """With the kept indexes, then without them: the same real values both times."""
    after = {id(c): measure(copy, c) for c in cases}
    drop(copy, kept)
    for case in cases:
        before = measure(copy, case)
        why = after[id(case)][1] or before[1]
        case.measured = (before[0], after[id(case)][0], why)


def measure(copy: AdviceCopy, case: Case) -> tuple[Measured | None, str]:
    if case.stmt.runnable is not None:
        return None, case.stmt.runnable
    if not case.samples:
        return None, "its $n could not all be given real values"
    try:
        copy.plan(case.stmt, case.samples[0], analyze=True)  # warms the cache: each run then reads alike
        runs = [copy.plan(case.stmt, values, analyze=True) for values in case.samples]
    except CopyFailed as failed:
        return None, f"EXPLAIN ANALYZE failed ({failed})"
    return Measured(median([execution_ms(r) for r in runs]), int(median([shared_buffers(r) for r in runs])),
                    len(runs)), ""


def suggest_from(workload: Workload, cases: list[Case], kept: list[Built],
                 sizes: dict[tuple[str, str], int]) -> list[Suggestion]:
    taken = {i.name for i in workload.indexes}
    suggestions = []
    for b in kept:
        table = b.candidate.table
        served = []
        for case in cases:
            if b.name not in case.used:
                continue
            before, after, why = case.measured
            if before and after and after.median_ms >= before.median_ms and after.buffers >= before.buffers:
                case.reason = (f"on real values the index did not help: {before.median_ms:.2f} → "
                               f"{after.median_ms:.2f} ms, {before.buffers:,} → {after.buffers:,} buffers")
                continue
            stats = case.stats
            served.append(Served(queryid=stats.queryid, query=short(case.stmt.text), calls=stats.calls,
                                 total_ms=stats.total_ms, calls_per_day=stats.calls_per_day, share=stats.share,
                                 mean_ms=stats.mean_ms, cost_before=case.cost_before or 0.0,
                                 cost_after=case.cost_after or 0.0, before=before, after=after, not_measured=why))
        if not served:
            continue
        facts = workload.tables.get(table)
        name = ef_core_name(table[1], b.candidate.columns, taken)
        taken.add(name)
        ratio = (facts.size_bytes / sizes[table]) if facts and sizes.get(table) else 1.0
        redundant = [i.name for i in workload.indexes if (i.schema, i.table) == table and i.method == "btree"
                     and not i.is_unique and not i.backs_constraint and not i.predicate and not i.has_expressions
                     and tuple(i.key_names) == b.candidate.columns[: i.key_count]]
        suggestions.append(Suggestion(
            schema=table[0], table=table[1], columns=b.candidate.columns, name=name, size_bytes=b.size_bytes,
            build_s=b.build_s, production_build_s=b.build_s * CONCURRENTLY_FACTOR * max(ratio, 0.0),
            writes_per_day=facts.writes_per_day if facts else 0.0, queries=served, makes_redundant=redundant))
    return sorted(suggestions, key=lambda s: -sum(q.share for q in s.queries))


def why_not(case: Case, rows: dict[tuple[str, str], float], min_gain: float) -> str:
    before = case.before or {"Plan": {}}
    already = used_indexes(before) if case.before else set()
    if already and not case.used:
        return f"already uses {', '.join(sorted(already))}"
    for table in case.stmt.tables:
        seq = sequential_rows(before, table[1]) if case.before else None
        total = rows.get(table, 0)
        if seq is not None and total and seq / total >= MOST_OF_THE_TABLE:
            return f"returns ~{seq / total:.0%} of {table[1]}: reading the table is cheaper than an index"
    if case.candidates:
        return (f"the best index tried cuts its plan cost by {max(case.gain, 0):.0%}, not the "
                f"{min_gain:.0%} asked for")
    return "its columns are already the leading columns of an index"
