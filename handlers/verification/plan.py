"""The one verification plan: what proves that a copy (a drill's throwaway instance, a restored target, a
Render recovery copy, a restored Render export) is the database it stands for, and sound.

Every drill and restore runs PLAN, in order. What differs between them is declared as data, never as
a branch in a caller: the reference the copy is compared with (a backup's manifest, or production as
it is now, for a copy that has no manifest of its own) and a `Caller` (how the majors line names the
copy, and which planned checks it makes in an earlier step, as a gate). Adding a check to PLAN adds it
to every drill and restore.

The smoke queries run everywhere, a restore into a real target included: that is exactly where the
application's own queries should be proven, and they only read (one SELECT each, in a READ ONLY
transaction with a statement timeout, checked by PostgreSQL's parser when the settings are read).

The comparison with the reference comes first: later checks change the copy (VALIDATE CONSTRAINT, the
amcheck extension), and the copy must be captured exactly as pg_restore (or Render) left it.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import psycopg

from ..drill import checks as C
from ..errors import Cancelled
from ..report import Check, Progress, ProgressFn, Verdict, no_progress
from ..target import connect
from .references import (
    AgainstArchive,
    AgainstInventory,
    AgainstManifest,
    NoReference,
    Reference,
    capture_source,
    row_differences_check,
)
from .steps import StepFailed

__all__ = ["AgainstArchive", "AgainstInventory", "AgainstManifest", "CALLERS", "Caller", "NoReference", "Options",
           "PLAN", "Reference", "capture_source", "plan_for", "row_differences_check", "verify"]

AMCHECK = "pg_amcheck: heap and B-tree indexes"


# -- who runs the plan, and how they differ ----------------------------------------------------
@dataclass(frozen=True)
class Caller:
    """One kind of drill or restore, and how it differs in running the plan (tests/test_verification_plan.py)."""

    name: str
    copy_word: str = "copy on"  # the majors line: "prod: PostgreSQL 16.4 · copy on 16.15"
    newer: str | None = None  # what a copy on a newer major means (None: it proves things on that major only)
    # Planned checks made in an earlier step as a gate: a drill chooses its instance's major and checks it
    # before restoring anything into it.
    made_earlier: frozenset[str] = frozenset()
    # Planned checks this caller does not make, and why (recorded as "not run" with the reason).
    opts_out: tuple[tuple[str, str], ...] = ()
    # pg_amcheck installed but unable to run: a failure on a throwaway copy the bot made (it must run
    # there), a warning on a target someone else runs (a managed server): the other checks proved the data.
    amcheck_unrunnable: Verdict = Verdict.FAILED


DRILL = Caller("drill", made_earlier=frozenset({"copy major"}))
RENDER_EXPORT_DRILL = Caller("render export drill", made_earlier=frozenset({"copy major"}))
RENDER_PITR_DRILL = Caller("render drill")  # Render chooses the major: the plan checks it
RESTORE = Caller("restore", "restored into", "a major upgrade", amcheck_unrunnable=Verdict.WARNING)
FOREIGN_RESTORE = Caller(
    "restore from a file", "restored into", "a major upgrade", amcheck_unrunnable=Verdict.WARNING,
    opts_out=(("expected indexes", "the archive has no manifest, so an expected index it lacks cannot be told from "
                                   "one its source lacked; the index review (`indexes`) of the target reports them"),))
PITR_RESTORE = Caller("point-in-time restore")  # Render makes the instance on the source's major: the plan checks it
CALLERS = (DRILL, RESTORE, FOREIGN_RESTORE, RENDER_PITR_DRILL, RENDER_EXPORT_DRILL, PITR_RESTORE)


@dataclass(frozen=True)
class Options:
    """What the settings ask of a verification ([drill] and [indexes] in dbops.toml)."""

    jobs: int = 2
    amcheck: bool = True
    heapallindexed: bool = False
    expected_indexes: tuple[Any, ...] | None = None  # None: none configured, nothing to check
    smoke_queries: tuple[Any, ...] = ()
    smoke_timeout_s: int = 60

    @classmethod
    def of(cls, drill: Any, expected_indexes: Iterable[Any] | None = None, **changes: Any) -> "Options":
        """From DrillSettings (jobs, amcheck, smoke queries) and the expected indexes; `changes` override."""
        values = dict(jobs=drill.jobs, amcheck=drill.amcheck, heapallindexed=drill.amcheck_heapallindexed,
                      expected_indexes=tuple(expected_indexes) if expected_indexes is not None else None,
                      smoke_queries=tuple(drill.smoke_queries), smoke_timeout_s=drill.smoke_timeout_s)
        return cls(**(values | changes))


# -- the plan ----------------------------------------------------------------------------
@dataclass
class Run:
    """One verification under way: what each planned check reads."""

    dsn: str
    reference: Reference
    caller: Caller
    options: Options
    conn: psycopg.Connection
    copy: dict[str, Any]  # the copy's inventory, captured before any check changed it
    copy_version: str  # SHOW server_version of the copy
    major: int | None  # of pg_amcheck: the copy's own (None: the default binaries')
    cancel: threading.Event


@dataclass(frozen=True)
class Planned:
    """One entry of the plan: the checks it makes, and what it checked in words (None: nothing to do here)."""

    name: str
    checks: Callable[[Run], Iterable[Check]]
    does: Callable[[Run], str | None]
    alongside: bool = False  # another process, with its own connection: runs beside the others


def _copy_major(run: Run) -> list[Check]:
    ref = run.reference
    return [C.copy_major_check(ref.source_name, ref.source_version, run.copy_version, run.caller.copy_word,
                               run.caller.newer)]


def _schema(run: Run) -> list[Check]:
    if run.reference.source is None:
        return [Check("schema", Verdict.NOT_RUN, f"not run: {run.reference.no_schema}")]
    return C.schema_checks(run.reference.source, run.copy)


def _validity(run: Run) -> list[Check]:
    source = run.reference.source
    return [C.constraints_valid_check(run.conn, C.not_valid_in_source(source) if source is not None else None),
            C.indexes_valid_check(run.conn)]


def _expected_indexes(run: Run) -> list[Check]:
    if run.options.expected_indexes is None:
        return []
    return [C.expected_indexes_check(run.conn, run.options.expected_indexes, run.reference.source, run.copy)]


def _smoke_queries(run: Run) -> list[Check]:
    return [C.smoke_query_check(run.conn, query, run.options.smoke_timeout_s) for query in run.options.smoke_queries]


def _amcheck(run: Run) -> list[Check]:
    """pg_amcheck, where the copy lets it run (on a managed server amcheck may be missing or not ours to create)."""
    name = AMCHECK + (" (heapallindexed)" if run.options.heapallindexed else "")
    if not run.options.amcheck:
        return [Check(name, Verdict.NOT_RUN, "not run: [drill] amcheck is off")]
    with connect(run.dsn, name="the copy", connect_timeout=15, autocommit=True) as conn:
        allowed, why = amcheck_allowed(conn)
    if not allowed:
        return [Check(name, Verdict.NOT_RUN, f"not run: {why}")]
    check = C.amcheck_check(run.dsn, run.options.jobs, run.options.heapallindexed, run.cancel, run.major)
    if not check.ok and "could not run" in check.detail:
        check.verdict = run.caller.amcheck_unrunnable
    return [check]


def _smoke_words(run: Run) -> str | None:
    n = len(run.options.smoke_queries)
    return f"{n} smoke {'query' if n == 1 else 'queries'}" if n else None


PLAN: list[Planned] = [
    Planned("copy major", _copy_major, lambda run: "the PostgreSQL major"),
    Planned("table data", lambda run: [run.reference.table_data(run.copy)], lambda run: run.reference.table_words),
    Planned("schema", _schema, lambda run: "the schema inventory" if run.reference.source is not None else None),
    Planned("validity", _validity, lambda run: "constraint and index validity"),
    Planned("expected indexes", _expected_indexes,
            lambda run: "the expected indexes" if run.options.expected_indexes is not None else None),
    Planned("smoke queries", _smoke_queries, _smoke_words),
    Planned("amcheck", _amcheck, lambda run: "pg_amcheck" if run.options.amcheck else None, alongside=True),
]


def plan_for(caller: Caller) -> list[Planned]:
    """The plan as `caller` runs it: PLAN, less what it made earlier (what it opts out of is recorded as not run)."""
    return [p for p in PLAN if p.name not in caller.made_earlier]


def runs(caller: Caller) -> list[str]:
    """The names of the planned checks `caller` makes."""
    skipped = dict(caller.opts_out)
    return [p.name for p in plan_for(caller) if p.name not in skipped]


@dataclass
class Verified:
    """What a verification did: the checks (also given to `record` one by one), and in words what it checked."""

    checks: list[Check] = field(default_factory=list)
    did: list[str] = field(default_factory=list)
    copy_version: str = ""  # SHOW server_version of the copy

    def sentence(self, head: str, reference: Reference) -> str:
        """"Verified the restored database against ...: a, b and c." for a report's procedure."""
        words = self.did[:-2] + [" and ".join(self.did[-2:])] if self.did else ["nothing"]
        return f"{head} {reference.against}: {', '.join(words)}."


def verify(dsn: str, reference: Reference, caller: Caller, options: Options, *,
           record: Callable[[Check], Any] = lambda check: None, major: int | None = None,
           progress: ProgressFn = no_progress, cancel: threading.Event | None = None,
           name: str = "the copy") -> Verified:
    """Run the plan on the copy at `dsn` (`name`: how an error names it), giving each check to `record`
    as it is made. Raises Cancelled when `cancel` is set, StepFailed (secret-free) when the copy cannot
    be read, TargetUnreachable when it cannot be reached."""
    cancel = cancel or threading.Event()
    stop_beside = threading.Event()  # the checks in this process broke off: what runs beside need not go on
    either = _Either(cancel, stop_beside)
    planned = plan_for(caller)
    skipped = dict(caller.opts_out)
    done = Verified()

    def keep(check: Check) -> None:
        done.checks.append(check)
        record(check)

    beside = ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify-beside")
    try:
        with connect(dsn, name=name, connect_timeout=15, autocommit=True) as conn:
            had_amcheck = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'amcheck')"
                                       ).fetchone()[0]
            progress(Progress("verify", 0.05, f"capturing the copy {reference.against}"))
            run = Run(dsn, reference, caller, options, conn, reference.capture(conn),
                      conn.execute("SHOW server_version").fetchone()[0], major, either)
            # pg_amcheck is another process reading other pages: beside the SQL checks, the verification
            # takes the longer of the two rather than their sum. It takes AccessShareLocks only.
            pending = [(p, beside.submit(lambda p=p: list(p.checks(run)))) for p in planned
                       if p.alongside and p.name not in skipped]
            inline = [p for p in planned if not p.alongside or p.name in skipped]
            for n, p in enumerate(inline):
                if cancel.is_set():
                    raise Cancelled("cancelled while verifying")
                if p.name in skipped:
                    keep(Check(p.name, Verdict.NOT_RUN, f"not run here: {skipped[p.name]}"))
                    continue
                progress(Progress("verify", 0.1 + 0.7 * n / max(1, len(inline)), p.does(run) or p.name))
                for check in p.checks(run):
                    keep(check)
            for p, future in pending:
                progress(Progress("verify", 0.85, f"waiting for {p.does(run) or p.name}"))
                for check in future.result():
                    keep(check)
            if cancel.is_set():
                raise Cancelled("cancelled while verifying")
            if not had_amcheck:  # pg_amcheck --install-missing added it: the copy stays as restored
                try:
                    conn.execute("DROP EXTENSION IF EXISTS amcheck")
                except psycopg.Error:
                    pass
    except psycopg.Error as exc:
        raise StepFailed(f"verifying the copy failed: {exc.diag.message_primary or type(exc).__name__}") from None
    finally:
        stop_beside.set()
        beside.shutdown(wait=True)
    done.did = [words for p in planned if p.name not in skipped and (words := p.does(run)) is not None]
    done.copy_version = run.copy_version
    return done


def amcheck_allowed(conn: psycopg.Connection) -> tuple[bool, str]:
    """Whether pg_amcheck can run here: amcheck installed, or installable by this role."""
    installed, available, superuser, trusted, can_create = conn.execute("""
        SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'amcheck'),
               EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'amcheck'),
               (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
               coalesce((SELECT bool_or(trusted) FROM pg_available_extension_versions WHERE name = 'amcheck'), false),
               has_database_privilege(current_database(), 'CREATE')""").fetchone()
    if installed or (available and (superuser or (trusted and can_create))):
        return True, ""
    if not available:
        return False, "the server does not offer the amcheck extension"
    return False, "this role may not create the amcheck extension on this server"


class _Either:
    def __init__(self, *events: threading.Event) -> None:
        self.events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)
