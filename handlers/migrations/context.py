"""Everything a rule may ask about the migration beyond its own statement."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from .nodes import DATA_CHANGES, Node, TableName, column_label, find_nodes, strings
from .parsing import Statement
from .rules.type_table import Change, Classification, classify
from .timeline import DropColumnSite, Timeline, TypeChangeSite


@dataclass
class TypeChange:
    site: TypeChangeSite
    classification: Classification
    misfit_rows: int | None = None  # rows that would not fit (NARROWING, counted in the database)

    @property
    def change(self) -> Change:
        return self.classification.change

    @property
    def label(self) -> str:
        return column_label(self.site.table, self.site.column)

    def describe(self) -> str:
        if self.site.old is None:
            return f"changes {self.label} to {self.site.new}: {self.classification.reason}"
        return f"changes {self.label} from {self.site.old} to {self.site.new}: {self.classification.reason}"


@dataclass
class DroppedColumn:
    site: DropColumnSite
    has_data: bool | None  # None: not known (no database, or the column is not in it)


@dataclass
class MigrationContext:
    filename: str
    statements: list[Statement]
    timeline: Timeline
    down: list[Statement] | None  # the DOWN migration's statements; None when none was given
    down_filename: str = "DOWN.sql"
    has_database: bool = False
    server_version: int | None = None  # the target's server_version_num, when a database is given
    catalog_tables: frozenset[TableName] = frozenset()  # touched tables the database has
    type_changes: dict[tuple[int, int], TypeChange] = field(default_factory=dict)
    dropped_columns: dict[tuple[int, int], DroppedColumn] = field(default_factory=dict)
    _nested: dict[int, dict[str, list[Node]]] = field(default_factory=dict, repr=False)

    def nested(self, stmt: Statement) -> dict[str, list[Node]]:
        """Function calls, WITH queries and row-changing statements anywhere in `stmt`, itself included,
        by node kind (found in one walk over its tree, shared by the rules that ask)."""
        found = self._nested.get(stmt.index)
        if found is None:
            found = {}
            nodes = find_nodes({stmt.kind: stmt.node}, _NESTED_KINDS) if stmt.may_hold(_NESTED_KINDS) else ()
            for kind, node in nodes:
                found.setdefault(kind, []).append(node)
            self._nested[stmt.index] = found
        return found

    @cached_property
    def defined_functions(self) -> frozenset[str]:
        """Names of functions, procedures and aggregates this file defines: a call of one runs
        code this check has not analysed, even when the name matches a harmless built-in."""
        names = set()
        for stmt in self.statements:
            if stmt.kind == "CreateFunctionStmt":
                names.update(strings(stmt.node.get("funcname"))[-1:])
            elif stmt.kind == "DefineStmt":
                names.update(strings(stmt.node.get("defnames"))[-1:])
        return frozenset(names)

    def created_before(self, table: TableName, stmt: Statement) -> bool:
        """Was `table` created (without IF NOT EXISTS) by an earlier statement of this file?"""
        return self.timeline.created_before(table, stmt.index)

    def lock_timeout_set(self, stmt: Statement) -> bool:
        return self.timeline.lock_timeout_before[stmt.index]

    def type_change(self, stmt: Statement, cmd_pos: int) -> TypeChange:
        return self.type_changes[(stmt.index, cmd_pos)]

    def type_changes_of(self, stmt: Statement) -> list[TypeChange]:
        """The ALTER COLUMN TYPE commands of an ALTER TABLE statement, classified."""
        changes = []
        for pos in range(len(stmt.node.get("cmds", ()))):
            change = self.type_changes.get((stmt.index, pos))
            if change is not None:
                changes.append(change)
        return changes

    def dropped_column(self, stmt: Statement, cmd_pos: int) -> DroppedColumn:
        return self.dropped_columns[(stmt.index, cmd_pos)]


_NESTED_KINDS = DATA_CHANGES | {"FuncCall", "RangeTableSample", "CommonTableExpr"}


def classify_type_changes(timeline: Timeline, catalog_tables: frozenset[TableName],
                          has_database: bool) -> dict[tuple[int, int], TypeChange]:
    changes = {}
    for key, site in timeline.type_changes.items():
        classification = classify(site.old, site.new, site.using, site.column)
        if site.empty and classification.change in (Change.LOSSY, Change.UNKNOWN, Change.NARROWING):
            classification = Classification(Change.REWRITE, (
                f"{classification.reason}, but the column was added earlier in this file and every row "
                "is still NULL, so no value can be lost or fail to fit"))
        elif classification.change is Change.UNKNOWN:
            if not has_database:
                where = "no database was given to look it up, and this file does not define it"
            elif site.table in catalog_tables:
                where = "the column is neither in the target database nor defined in this file"
            else:
                where = "the table is neither in the target database nor defined in this file"
            classification = Classification(
                Change.UNKNOWN, f"its old type is unknown ({where}), so the change cannot be proven lossless")
        changes[key] = TypeChange(site, classification)
    return changes
