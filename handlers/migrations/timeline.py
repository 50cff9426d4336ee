"""One pass over the migration that replays its schema changes in order, so each rule knows
what the schema looked like at its statement: the old type of a column being altered, whether
a table was created earlier in this file, whether lock_timeout is set at that point, whether a
column is NOT NULL (or proven so by a valid CHECK), and whether a column this file added still
holds only NULLs (nothing in it can be lost).

Column types start from the catalog (when a database is given) and follow the file's own
CREATE TABLE / ADD COLUMN / ALTER TYPE / RENAME / DROP statements; NOT NULL, CHECK constraints
and index columns start from the catalog for the tables whose NOT NULL matters (SET NOT NULL,
ADD PRIMARY KEY) and follow the file's own statements.

In EF Core's idempotent scripts each migration's statements run only when the database does not have
that migration yet (efcore.py): after them, what they made (a table created, a column added and
still empty, a SET) is no longer known to be this file's doing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .nodes import (
    MAY_CHANGE_ROWS,
    Node,
    TableName,
    alter_table_cmds,
    column_constraints,
    const_value,
    is_alter_table,
    not_null_columns,
    strings,
    table_of,
    table_of_names,
)
from .parsing import Statement
from .sqltypes import SERIALS, SqlType, type_from_ast

CatalogColumns = dict[TableName, dict[str, SqlType]]


@dataclass
class CatalogConstraints:
    """What the catalog says about one table's NOT NULL columns (facts.fetch_constraints)."""

    not_null: frozenset[str] = frozenset()
    checks: dict[str, tuple[frozenset[str], bool]] = field(default_factory=dict)  # name: (proves NOT NULL, valid)
    indexes: dict[str, tuple[str | None, ...]] = field(default_factory=dict)  # name: columns (None: expression)


# Statements that may write rows (a function call can write anywhere): after one, a column this
# file added is no longer known to hold only NULLs.
_MAY_WRITE = frozenset(MAY_CHANGE_ROWS) | {"DoStmt", "CallStmt", "ExecuteStmt"}
_FILLS_ROWS = {"CONSTR_DEFAULT", "CONSTR_IDENTITY", "CONSTR_GENERATED"}
# ALTER TABLE commands on a column that leave its stored values as they are.
_KEEPS_VALUES = {"AT_ColumnDefault", "AT_SetStatistics", "AT_SetStorage", "AT_SetCompression", "AT_SetOptions",
                 "AT_ResetOptions", "AT_ValidateConstraint", "AT_DropConstraint"}


class Column:
    """A column as the file has left it so far. Its type is read from the parse tree only when
    asked (most columns a migration creates are never altered later)."""

    __slots__ = ("_type", "_type_name", "db", "not_null", "empty", "added")

    def __init__(self, type: SqlType | None, db: tuple[TableName, str] | None, type_name: Node | None = None,
                 not_null: bool | None = None, empty: bool = False, added: tuple[int, int] | None = None):
        self._type, self._type_name = type, type_name
        self.db = db  # where its current values live in the database, while unchanged
        self.not_null = not_null  # None: not known
        self.empty = empty  # added by this file and every row still NULL
        self.added = added  # (statement, search_path epoch) of the CREATE TABLE or ADD COLUMN that made it

    @property
    def type(self) -> SqlType | None:  # None: unknown
        if self._type is None and self._type_name is not None:
            self._type = type_from_ast(self._type_name)
        return self._type


@dataclass
class TypeChangeSite:
    table: TableName
    column: str
    old: SqlType | None
    new: SqlType
    using: Node | None
    db: tuple[TableName, str] | None  # set when the old values are the database's, untouched
    empty: bool = False  # added earlier in this file, every row still NULL: no value to lose


@dataclass
class DropColumnSite:
    table: TableName
    column: str
    db: tuple[TableName, str] | None  # the column in the database whose data would go
    empty: bool = False  # added earlier in this file, every row still NULL
    added_by_up: bool = False  # DOWN drops a column UP added (same table, by name and search_path)


@dataclass
class NotNullSite:
    """A column that SET NOT NULL (or an ADD PRIMARY KEY) makes NOT NULL, as it was just before."""

    table: TableName
    column: str
    state: str  # "not null" (already: nothing to check), "proven" (a valid CHECK), "nullable", "unknown"
    check: str | None = None  # the CHECK proving it, or one that would once validated


@dataclass
class PrimaryKeySite:
    table: TableName
    index: str | None  # USING INDEX name
    columns: list[NotNullSite] | None  # None: the index's columns are not known


@dataclass
class Timeline:
    # statement index ranges in which a table exists because this file created it:
    # [created_at, gone_at] (gone_at None: still there at the end; renames and drops end a range)
    created: dict[TableName, list[list]] = field(default_factory=dict)
    type_changes: dict[tuple[int, int], TypeChangeSite] = field(default_factory=dict)  # (stmt, cmd)
    dropped_columns: dict[tuple[int, int], DropColumnSite] = field(default_factory=dict)
    set_not_null: dict[tuple[int, int], NotNullSite] = field(default_factory=dict)  # (stmt, cmd)
    primary_keys: dict[tuple[int, int], PrimaryKeySite] = field(default_factory=dict)  # (stmt, cmd)
    lock_timeout_before: list[bool] = field(default_factory=list)  # per statement: set before it?
    # per statement: how many search_path changes came before it. An unqualified name means
    # another table once search_path changes, so "created in this file" holds only within one.
    search_path_epoch: list[int] = field(default_factory=list)

    def created_before(self, table: TableName, index: int) -> bool:
        """Did an earlier statement of this file create `table` (without IF NOT EXISTS), and does
        it still exist (under this name, with the same search_path) when statement `index` runs?"""
        for start, gone in self.created.get(table, ()):
            if start < index and (gone is None or gone >= index) and (
                    table.schema is not None or self.search_path_epoch[start] == self.search_path_epoch[index]):
                return True
        return False

    def mark_created(self, table: TableName, index: int) -> None:
        self.created.setdefault(table, []).append([index, None])

    def forget_created(self, index: int) -> None:
        """After a ROLLBACK the tables this file created may not exist (and a CREATE that failed
        inside a rolled-back savepoint never made one): trust none of them from here on."""
        for ranges in self.created.values():
            if ranges[-1][1] is None:
                ranges[-1][1] = index

    def mark_gone(self, table: TableName, index: int) -> bool:
        """The file-created `table` stops existing under this name at statement `index`."""
        ranges = self.created.get(table)
        if ranges and ranges[-1][1] is None:
            ranges[-1][1] = index
            return True
        return False


def touched_tables(statements: list[Statement]) -> set[TableName]:
    """Tables whose columns the file may need to know: those it alters or renames."""
    tables = set()
    for stmt in statements:
        if stmt.kind in ("AlterTableStmt", "RenameStmt") and "relation" in stmt.node:
            tables.add(table_of(stmt.node["relation"]))
    return tables


def not_null_tables(statements: list[Statement]) -> set[TableName]:
    """Tables whose NOT NULL columns, CHECK constraints and indexes the file needs to know: those
    it runs SET NOT NULL or ADD PRIMARY KEY on."""
    tables = set()
    for stmt in statements:
        if stmt.kind == "AlterTableStmt" and is_alter_table(stmt.node):
            for _, cmd in alter_table_cmds(stmt.node):
                if cmd.get("subtype") == "AT_SetNotNull" or (
                        cmd.get("subtype") == "AT_AddConstraint"
                        and cmd.get("def", {}).get("Constraint", {}).get("contype") == "CONSTR_PRIMARY"):
                    tables.add(table_of(stmt.node["relation"]))
    return tables


def replay(statements: list[Statement], catalog: CatalogColumns,
           constraints: dict[TableName, CatalogConstraints] | None = None,
           new_session_at: int | None = None) -> Timeline:
    """`new_session_at`: the index where a new session starts (DOWN after UP): no SET carries over."""
    timeline = Timeline()
    tables: dict[TableName, dict[str, Column]] = {}
    known = constraints or {}
    nulls = _NotNullState(known)
    fresh: list[Column] = []  # columns this file added that hold only NULLs so far

    def columns(table: TableName) -> dict[str, Column]:
        if table not in tables:
            not_null = known[table].not_null if table in known else None
            tables[table] = {name: Column(t, (table, name), not_null=None if not_null is None else name in not_null)
                             for name, t in catalog.get(table, {}).items()}
        return tables[table]

    lock_timeout, epoch, epochs = False, 0, 0  # epochs: how many search_paths were seen (0: the default)
    guard, at_guard = None, (False, 0)  # the EF migration being replayed; lock_timeout and epoch before it
    for stmt in statements:
        if stmt.index == new_session_at:
            lock_timeout, epoch = False, 0  # the default search_path again
            guard, at_guard = None, (False, 0)
        migration = stmt.guard.migration_id if stmt.guard is not None else None
        if migration != guard:
            if guard is not None:  # its statements may have been skipped: the database already had them
                for col in fresh:
                    col.empty = False  # and rows were written since
                fresh.clear()
                timeline.forget_created(stmt.index)
                lock_timeout = lock_timeout and at_guard[0]
                if epoch != at_guard[1]:  # which search_path holds is unknown: a new one
                    epochs += 1
                    epoch = epochs
            guard, at_guard = migration, (lock_timeout, epoch)
        timeline.lock_timeout_before.append(lock_timeout)
        timeline.search_path_epoch.append(epoch)
        kind, node = stmt.kind, stmt.node
        if kind in _MAY_WRITE or _unsettles_names(kind, node):
            for col in fresh:
                col.empty = False
            fresh.clear()
        if kind == "AlterTableStmt" and is_alter_table(node):
            table = table_of(node["relation"])
            cols = columns(table)
            for pos, cmd in alter_table_cmds(node):
                subtype, name, key = cmd.get("subtype"), cmd.get("name"), (stmt.index, pos)
                if subtype == "AT_AddColumn":
                    coldef = cmd["def"]["ColumnDef"]
                    if cmd.get("missing_ok") and coldef["colname"] in cols:
                        continue  # ADD COLUMN IF NOT EXISTS of a column that exists: nothing changes
                    certain = not cmd.get("missing_ok") or table in catalog  # that it did not exist
                    col = cols[coldef["colname"]] = _added_column(coldef, certain)
                    col.added = (stmt.index, epoch) if certain else None
                    if col.empty:
                        fresh.append(col)
                elif subtype == "AT_AlterColumnType":
                    coldef = cmd["def"]["ColumnDef"]
                    new, using = type_from_ast(coldef["typeName"]), coldef.get("raw_default")
                    col = cols.get(name) or Column(None, None)
                    timeline.type_changes[key] = TypeChangeSite(table, name, col.type, new, using, col.db, col.empty)
                    cols[name] = Column(new, None, not_null=col.not_null, empty=col.empty and using is None,
                                        added=col.added)
                    if cols[name].empty:
                        fresh.append(cols[name])
                elif subtype == "AT_DropColumn":
                    col = cols.pop(name, None)
                    by_up = bool(col and col.added and new_session_at is not None
                                 and col.added[0] < new_session_at <= stmt.index and col.added[1] == epoch)
                    timeline.dropped_columns[key] = DropColumnSite(
                        table, name, col.db if col else None, bool(col and col.empty), by_up)
                elif subtype in ("AT_SetNotNull", "AT_DropNotNull"):
                    if subtype == "AT_SetNotNull":
                        timeline.set_not_null[key] = nulls.site(table, name, cols.get(name))
                    cols.setdefault(name, Column(None, None)).not_null = subtype == "AT_SetNotNull"
                elif subtype == "AT_AddConstraint" and "Constraint" in cmd.get("def", {}):
                    keys = nulls.add_constraint(table, cmd["def"]["Constraint"])
                    if keys is not False:  # a primary key
                        timeline.primary_keys[key] = PrimaryKeySite(
                            table, cmd["def"]["Constraint"].get("indexname"),
                            None if keys is None else [nulls.site(table, k, cols.get(k)) for k in keys])
                        for k in keys or ():
                            cols.setdefault(k, Column(None, None)).not_null = True
                elif subtype in ("AT_ValidateConstraint", "AT_DropConstraint"):
                    nulls.change_check(table, name, validate=subtype == "AT_ValidateConstraint")
                elif name in cols and subtype not in _KEEPS_VALUES:
                    cols[name].empty = False  # e.g. SET EXPRESSION computes values for every row
        elif kind == "CreateStmt":
            table = table_of(node["relation"])
            if node.get("if_not_exists") and table in catalog:
                continue  # it exists: the definition is ignored
            if not node.get("if_not_exists"):
                timeline.mark_created(table, stmt.index)
            tables[table] = _created_columns(node)
            nulls.checks[table] = {}
        elif kind == "IndexStmt" and node.get("idxname"):
            nulls.add_index(table_of(node["relation"]), node)
        elif kind == "CreateTableAsStmt" and node.get("objtype") == "OBJECT_TABLE":
            table = table_of(node["into"]["rel"])
            if not node.get("if_not_exists"):
                timeline.mark_created(table, stmt.index)
            tables[table] = {}
        elif kind == "RenameStmt":
            _rename(node, columns, tables, timeline, stmt.index)
        elif kind == "DropStmt" and node.get("removeType") == "OBJECT_TABLE":
            for names in node.get("objects", ()):
                table = table_of_names(names["List"]["items"])
                tables[table] = {}
                nulls.checks[table] = {}
                timeline.mark_gone(table, stmt.index)
        elif kind == "AlterObjectSchemaStmt" and node.get("objectType") == "OBJECT_TABLE" and "relation" in node:
            timeline.mark_gone(table_of(node["relation"]), stmt.index)
        elif kind == "TransactionStmt" and node.get("kind") in ("TRANS_STMT_ROLLBACK", "TRANS_STMT_ROLLBACK_TO"):
            timeline.forget_created(stmt.index)
        elif kind == "VariableSetStmt":
            name = (node.get("name") or "").lower()
            if name == "lock_timeout":
                value = const_value((node.get("args") or [None])[0])
                lock_timeout = node.get("kind") == "VAR_SET_VALUE" and not _is_zero(value)
            elif node.get("kind") == "VAR_RESET_ALL":
                lock_timeout = False
                epochs += 1
                epoch = epochs  # search_path too
            elif name == "search_path":
                epochs += 1
                epoch = epochs
        elif kind == "SelectStmt":
            value = _set_config(node, "lock_timeout")
            if value is not None:
                lock_timeout = not _is_zero(value)
            if _set_config(node, "search_path") is not None:
                epochs += 1
                epoch = epochs
    return timeline


def _unsettles_names(kind: str, node: Node) -> bool:
    """After a ROLLBACK (TO SAVEPOINT) the file's ADD COLUMNs may not have happened, and after a
    search_path change an unqualified name may mean another table: a column this file added is no
    longer surely the one a later statement names."""
    if kind == "TransactionStmt":
        return node.get("kind") in ("TRANS_STMT_ROLLBACK", "TRANS_STMT_ROLLBACK_TO")
    return kind == "VariableSetStmt" and (
        node.get("kind") == "VAR_RESET_ALL" or (node.get("name") or "").lower() == "search_path")


def _declares_not_null(coldef: Node) -> bool:
    contypes = {c.get("contype") for c in column_constraints(coldef)}
    return bool(coldef.get("is_not_null") or contypes & {"CONSTR_NOTNULL", "CONSTR_PRIMARY"})


def _added_column(coldef: Node, certain: bool) -> Column:
    """A column ADD COLUMN makes: empty unless a default, identity, generation or serial fills its rows,
    or (not `certain`: ADD COLUMN IF NOT EXISTS without a database to say) it may exist already."""
    contypes = {c.get("contype") for c in column_constraints(coldef)}
    serial = bool(set(strings(coldef["typeName"].get("names"))[-1:]) & SERIALS)
    return Column(None, None, coldef["typeName"], not_null=_declares_not_null(coldef),
                  empty=certain and not (contypes & _FILLS_ROWS or serial))


def _created_columns(node: Node) -> dict[str, Column]:
    keys = {k for elt in node.get("tableElts", ()) if elt.get("Constraint", {}).get("contype") == "CONSTR_PRIMARY"
            for k in strings(elt["Constraint"].get("keys"))}
    return {
        elt["ColumnDef"]["colname"]: Column(None, None, elt["ColumnDef"]["typeName"],
                                            not_null=_declares_not_null(elt["ColumnDef"])
                                            or elt["ColumnDef"]["colname"] in keys)
        for elt in node.get("tableElts", ()) if "ColumnDef" in elt
    }


class _NotNullState:
    """CHECK constraints that prove columns NOT NULL, and index columns, as the file leaves them."""

    def __init__(self, known: dict[TableName, CatalogConstraints]):
        self.checks: dict[TableName, dict[str, list]] = {  # name: [columns it proves NOT NULL, valid]
            table: {name: [cols, valid] for name, (cols, valid) in facts.checks.items()}
            for table, facts in known.items()}
        self.indexes: dict[TableName, tuple[str | None, ...]] = {  # (schema, index name): columns
            TableName(table.schema, name): cols
            for table, facts in known.items() for name, cols in facts.indexes.items()}

    def site(self, table: TableName, column: str, col: Column | None) -> NotNullSite:
        if col is not None and col.not_null:
            return NotNullSite(table, column, "not null")
        proving = [(name, valid) for name, (cols, valid) in self.checks.get(table, {}).items() if column in cols]
        valid = [name for name, ok in proving if ok]
        if valid:
            return NotNullSite(table, column, "proven", valid[0])
        state = "nullable" if col is not None and col.not_null is False else "unknown"
        return NotNullSite(table, column, state, proving[0][0] if proving else None)

    def add_constraint(self, table: TableName, constraint: Node) -> list[str] | None | bool:
        """Record a CHECK; for a PRIMARY KEY return its columns (None: not known), else False."""
        contype = constraint.get("contype")
        if contype == "CONSTR_CHECK":
            proves = not_null_columns(constraint.get("raw_expr"))
            if proves:
                name = constraint.get("conname") or f"{table.name}_{min(proves)}_check"
                self.checks.setdefault(table, {})[name] = [proves, not constraint.get("skip_validation")]
        if contype != "CONSTR_PRIMARY":
            return False
        if not constraint.get("indexname"):
            return strings(constraint.get("keys"))
        cols = self.indexes.get(TableName(table.schema, constraint["indexname"]))
        return list(cols) if cols and None not in cols else None

    def change_check(self, table: TableName, name: str, validate: bool) -> None:
        checks = self.checks.get(table, {})
        if validate and name in checks:
            checks[name][1] = True
        elif not validate:
            checks.pop(name, None)

    def add_index(self, table: TableName, node: Node) -> None:
        params = [p.get("IndexElem", {}) for p in node.get("indexParams", ())]
        self.indexes[TableName(table.schema, node["idxname"])] = tuple(p.get("name") for p in params)


def _rename(node: Node, columns, tables, timeline: Timeline, index: int) -> None:
    if "relation" not in node:
        return
    table = table_of(node["relation"])
    if node.get("renameType") == "OBJECT_TABLE":
        new = TableName(table.schema, node["newname"])
        tables[new] = columns(table)
        tables[table] = {}
        if timeline.mark_gone(table, index):
            timeline.mark_created(new, index)
    elif node.get("renameType") == "OBJECT_COLUMN" and node.get("relationType") == "OBJECT_TABLE":
        cols = columns(table)
        if node["subname"] in cols:
            cols[node["newname"]] = cols.pop(node["subname"])


def _is_zero(value: object) -> bool:
    """lock_timeout 0 (or '0', '0ms', '0s') switches the timeout off."""
    if value is None:
        return True
    if isinstance(value, int):
        return value == 0
    text = str(value).strip()
    digits = text.rstrip("abcdefghijklmnopqrstuvwxyz ").strip()
    try:
        return float(digits) == 0
    except ValueError:
        return False


def _set_config(node: Node, setting: str) -> object | None:
    """The value of `SELECT set_config('<setting>', value, ...)`, if that is what it does."""
    for target in node.get("targetList", ()):
        call = target.get("ResTarget", {}).get("val", {}).get("FuncCall")
        if call and strings(call.get("funcname"))[-1:] == ["set_config"]:
            args = call.get("args", ())
            name = const_value(args[0]) if args else None
            if len(args) >= 2 and isinstance(name, str) and name.lower() == setting:
                return const_value(args[1]) or 0
    return None
