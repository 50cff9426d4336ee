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
from .steps import StepFailed

SOURCE_LEVEL = "counts"  # checksums of production would read every row of it; counts are enough there
AMCHECK = "pg_amcheck: heap and B-tree indexes"


# -- what a copy is compared with ----------------------------------------------------------
@dataclass
class AgainstManifest:
    """A backup's manifest: the copy holds exactly its rows (and, at level "checksums", their content)."""

    manifest: dict[str, Any]

    @property
    def source(self) -> dict[str, Any]:
        return self.manifest

    @property
    def source_name(self) -> str:
        return str(self.manifest.get("target", "?"))

    @property
    def source_version(self) -> str | int | None:
        return self.manifest.get("server_version") or self.manifest.get("server_version_num")

    @property
    def level(self) -> str:
        return self.manifest.get("integrity_level") or "counts"

    @property
    def against(self) -> str:
        return f"against the backup's manifest (integrity level {self.level})"

    @property
    def table_words(self) -> str:
        return f"row counts{' and checksums' if self.level == 'checksums' else ''} of every table"

    def capture(self, conn: psycopg.Connection) -> dict[str, Any]:
        return C.capture_restored(conn, self.level, C.checksum_method(self.manifest))

    def table_data(self, copy: dict[str, Any]) -> Check:
        return C.table_data_check(self.manifest, copy)


@dataclass
class AgainstSourceNow:
    """Production's inventory, captured when the drill started (`capture_source`): a copy of an earlier
    moment has the same schema, and row counts that differ by design (shown, never failed)."""

    inventory: dict[str, Any]
    source_name: str
    source_version: str | int | None = None

    def __post_init__(self) -> None:
        self.source_version = self.source_version or self.inventory.get("server_version_num")

    @property
    def source(self) -> dict[str, Any]:
        return self.inventory

    against = "against production's inventory now"
    table_words = "row counts per table against production's (shown as differences)"

    def capture(self, conn: psycopg.Connection) -> dict[str, Any]:
        return C.capture_restored(conn, SOURCE_LEVEL)

    def table_data(self, copy: dict[str, Any]) -> Check:
        return row_differences_check(self.inventory, copy)


def capture_source(source: Any) -> dict[str, Any]:
    """Production's row counts and schema inventory now, in one read-only snapshot (`source`: a Target)."""
    with source.connect(autocommit=True) as conn:
        return C.capture_restored(conn, SOURCE_LEVEL)


def row_differences_check(source: dict, copy: dict) -> Check:
    prod = {f"{t['schema']}.{t['name']}": int(t["rows"]) for t in source.get("tables", [])}
    restored = {f"{t['schema']}.{t['name']}": int(t["rows"]) for t in copy.get("tables", [])}
    diffs = [f"{name}: {restored[name]:,} in the copy, {prod[name]:,} in production now "
             f"({restored[name] - prod[name]:+,})" for name in sorted(prod.keys() & restored.keys())
             if prod[name] != restored[name]]
    name = f"row counts of {len(prod)} tables against production now"
    total = sum(restored.values())
    if not diffs:
        return Check(name, Verdict.OK, f"{total:,} rows, every table as in production now")
    return Check(name, Verdict.OK, f"{total:,} rows; differences, expected since the copy is of an earlier moment "
                                   f"(not failures): {C.listed(diffs)}")


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


DRILL = Caller("drill", made_earlier=frozenset({"copy major"}))
RENDER_EXPORT_DRILL = Caller("render export drill", made_earlier=frozenset({"copy major"}))
RENDER_PITR_DRILL = Caller("render drill")  # Render chooses the major: the plan checks it
RESTORE = Caller("restore", "restored into", "a major upgrade")
CALLERS = (DRILL, RESTORE, RENDER_PITR_DRILL, RENDER_EXPORT_DRILL)


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
    reference: AgainstManifest | AgainstSourceNow
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
    return C.schema_checks(run.reference.source, run.copy)


def _validity(run: Run) -> list[Check]:
    return [C.constraints_valid_check(run.conn, C.not_valid_in_source(run.reference.source)),
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
    return [C.amcheck_check(run.dsn, run.options.jobs, run.options.heapallindexed, run.cancel, run.major)]


def _smoke_words(run: Run) -> str | None:
    n = len(run.options.smoke_queries)
    return f"{n} smoke {'query' if n == 1 else 'queries'}" if n else None


PLAN: list[Planned] = [
    Planned("copy major", _copy_major, lambda run: "the PostgreSQL major"),
    Planned("table data", lambda run: [run.reference.table_data(run.copy)], lambda run: run.reference.table_words),
    Planned("schema", _schema, lambda run: "the schema inventory"),
    Planned("validity", _validity, lambda run: "constraint and index validity"),
    Planned("expected indexes", _expected_indexes,
            lambda run: "the expected indexes" if run.options.expected_indexes is not None else None),
    Planned("smoke queries", _smoke_queries, _smoke_words),
    Planned("amcheck", _amcheck, lambda run: "pg_amcheck" if run.options.amcheck else None, alongside=True),
]


def plan_for(caller: Caller) -> list[Planned]:
    """The plan as `caller` runs it: PLAN, less what it made earlier."""
    return [p for p in PLAN if p.name not in caller.made_earlier]


@dataclass
class Verified:
    """What a verification did: the checks (also given to `record` one by one), and in words what it checked."""

    checks: list[Check] = field(default_factory=list)
    did: list[str] = field(default_factory=list)
    copy_version: str = ""  # SHOW server_version of the copy

    def sentence(self, head: str, reference: AgainstManifest | AgainstSourceNow) -> str:
        """"Verified the restored database against ...: a, b and c." for a report's procedure."""
        words = self.did[:-2] + [" and ".join(self.did[-2:])] if self.did else ["nothing"]
        return f"{head} {reference.against}: {', '.join(words)}."


def verify(dsn: str, reference: AgainstManifest | AgainstSourceNow, caller: Caller, options: Options, *,
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
            pending = [(p, beside.submit(lambda p=p: list(p.checks(run)))) for p in planned if p.alongside]
            inline = [p for p in planned if not p.alongside]
            for n, p in enumerate(inline):
                if cancel.is_set():
                    raise Cancelled("cancelled while verifying")
                progress(Progress("verify", 0.1 + 0.7 * n / max(1, len(inline)), p.name))
                for check in p.checks(run):
                    keep(check)
            for p, future in pending:
                progress(Progress("verify", 0.85, f"waiting for {p.name}"))
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
    done.did = [words for p in planned if (words := p.does(run)) is not None]
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
