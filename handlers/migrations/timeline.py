"""One pass over the migration that replays its schema changes in order, so each rule knows
what the schema looked like at its statement: the old type of a column being altered, whether
a table was created earlier in this file, whether lock_timeout is set at that point.

Column types start from the catalog (when a database is given) and follow the file's own
CREATE TABLE / ADD COLUMN / ALTER TYPE / RENAME / DROP statements.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .nodes import Node, TableName, alter_table_cmds, const_value, is_alter_table, strings, table_of, table_of_names
from .parsing import Statement
from .sqltypes import SqlType, type_from_ast

CatalogColumns = dict[TableName, dict[str, SqlType]]


class Column:
    """A column as the file has left it so far. Its type is read from the parse tree only when
    asked (most columns a migration creates are never altered later)."""

    __slots__ = ("_type", "_type_name", "db", "added")

    def __init__(self, type: SqlType | None, db: tuple[TableName, str] | None, type_name: Node | None = None,
                 added: bool = False):
        self._type, self._type_name = type, type_name
        self.db = db  # where its current values live in the database, while unchanged
        self.added = added  # created by this migration (CREATE TABLE, ADD COLUMN): it held no data before

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


@dataclass
class DropColumnSite:
    table: TableName
    column: str
    db: tuple[TableName, str] | None  # the column in the database whose data would go
    added: bool = False  # an earlier statement of the migration added it (DOWN dropping what UP added)


@dataclass
class Timeline:
    # statement index ranges in which a table exists because this file created it:
    # [created_at, gone_at] (gone_at None: still there at the end; renames and drops end a range)
    created: dict[TableName, list[list]] = field(default_factory=dict)
    type_changes: dict[tuple[int, int], TypeChangeSite] = field(default_factory=dict)  # (stmt, cmd)
    dropped_columns: dict[tuple[int, int], DropColumnSite] = field(default_factory=dict)
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


def replay(statements: list[Statement], catalog: CatalogColumns, new_session_at: int | None = None) -> Timeline:
    """`new_session_at`: the index where a new session starts (DOWN after UP): no SET carries over."""
    timeline = Timeline()
    tables: dict[TableName, dict[str, Column]] = {}

    def columns(table: TableName) -> dict[str, Column]:
        if table not in tables:
            tables[table] = {name: Column(t, (table, name)) for name, t in catalog.get(table, {}).items()}
        return tables[table]

    lock_timeout, epoch, epochs = False, 0, 0  # epochs: how many search_paths were seen (0: the default)
    for stmt in statements:
        if stmt.index == new_session_at:
            lock_timeout, epoch = False, 0  # the default search_path again
        timeline.lock_timeout_before.append(lock_timeout)
        timeline.search_path_epoch.append(epoch)
        kind, node = stmt.kind, stmt.node
        if kind == "AlterTableStmt" and is_alter_table(node):
            table = table_of(node["relation"])
            cols = columns(table)
            for pos, cmd in alter_table_cmds(node):
                subtype, name = cmd.get("subtype"), cmd.get("name")
                if subtype == "AT_AddColumn":
                    coldef = cmd["def"]["ColumnDef"]
                    cols[coldef["colname"]] = Column(None, None, coldef["typeName"], added=True)
                elif subtype == "AT_AlterColumnType":
                    coldef = cmd["def"]["ColumnDef"]
                    new = type_from_ast(coldef["typeName"])
                    col = cols.get(name) or Column(None, None)
                    timeline.type_changes[(stmt.index, pos)] = TypeChangeSite(
                        table, name, col.type, new, coldef.get("raw_default"), col.db)
                    cols[name] = Column(new, None, added=col.added)
                elif subtype == "AT_DropColumn":
                    col = cols.pop(name, None)
                    timeline.dropped_columns[(stmt.index, pos)] = DropColumnSite(
                        table, name, col.db if col else None, added=col is not None and col.added)
        elif kind == "CreateStmt":
            table = table_of(node["relation"])
            if node.get("if_not_exists") and table in catalog:
                continue  # it exists: the definition is ignored
            if not node.get("if_not_exists"):
                timeline.mark_created(table, stmt.index)
            tables[table] = {
                elt["ColumnDef"]["colname"]: Column(None, None, elt["ColumnDef"]["typeName"], added=True)
                for elt in node.get("tableElts", ()) if "ColumnDef" in elt
            }
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
