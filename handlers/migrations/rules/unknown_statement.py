"""unknown-statement: a statement no rule understands counts as forbidden (the check fails closed).

`UNDERSTOOD` is the allow-list: each statement kind the rules know, with a test for the forms
of it they know (e.g. which ALTER TABLE commands, which settings SET may change). Kinds that
belong to another forbidden rule (DO, CALL, COPY, GRANT, roles, triggers, extensions, ...)
are listed too, so they are reported once, under that rule's code. Everything else, from
ALTER SYSTEM, LOAD and MERGE to PREPARE/EXECUTE, CREATE RULE, foreign servers and publications,
is reported here.
"""
from __future__ import annotations

from typing import Callable

from ..harmless import SAFE_SETTINGS
from ..nodes import Node, alter_table_cmds
from ..rule import FORBIDDEN, Rule
from .privilege_change import TABLE_CMDS as PRIVILEGE_CMDS
from .trigger import TABLE_CMDS as TRIGGER_CMDS

BAD = [
    "ALTER SYSTEM SET wal_level = minimal;",
    "LOAD 'auto_explain';",
    "SET session_replication_role = replica;",
    'PREPARE wipe AS DELETE FROM "Notes" WHERE "Id" > $1;\nEXECUTE wipe(0);',
    'MERGE INTO "Notes" n USING "Boards" b ON n."BoardId" = b."Id" WHEN MATCHED THEN DELETE;',
    'CREATE RULE keep AS ON UPDATE TO "Boards" DO INSTEAD NOTHING;',
    'ALTER TABLE "Notes" DISABLE RULE keep;',
    "ALTER TYPE address DROP ATTRIBUTE zip CASCADE;",
    "ALTER SEQUENCE \"Notes_Id_seq\" RESTART WITH 1;",
    "CREATE SERVER elsewhere FOREIGN DATA WRAPPER postgres_fdw;",
    "CREATE PUBLICATION everything FOR ALL TABLES;",
    "PREPARE TRANSACTION 'held';",
    "DROP DATABASE asidenote;",
    "NOTIFY app_reload;",
    "EXPLAIN ANALYZE EXECUTE wipe(0);",
    "CREATE SCHEMA s CREATE TRIGGER t AFTER INSERT ON x FOR EACH ROW EXECUTE FUNCTION f();",
]
GOOD = [
    "SET lock_timeout = '2s';\nSET statement_timeout = '15min';\nRESET ALL;",
    "BEGIN;\nCOMMENT ON TABLE \"Notes\" IS 'user notes';\nCOMMIT;",
    "CREATE TYPE mood AS ENUM ('ok', 'meh');\nALTER TYPE mood ADD VALUE 'great';",
    'CREATE SEQUENCE "Invoice_seq";\nCREATE VIEW "ActiveUsers" AS SELECT * FROM "Users" WHERE "IsActive";',
    'ANALYZE "Notes";\nREFRESH MATERIALIZED VIEW "NoteStats";\nREINDEX INDEX CONCURRENTLY "IX_Notes_Title";',
    'EXPLAIN SELECT * FROM "Notes" WHERE "Id" = 1;',
    'ALTER TABLE "Notes" SET SCHEMA archive;',
    'ALTER TABLE "AuditLogs" DETACH PARTITION "AuditLogs_2023";  -- detach-partition warns',
]

Check = Callable[[Node], "str | None"]  # None: understood; else why not

# ALTER TABLE commands the rules understand (or that change no data and run no code).
_ALTER_TABLE_CMDS = frozenset({
    "AT_AddColumn", "AT_ColumnDefault", "AT_DropNotNull", "AT_SetNotNull", "AT_SetStatistics",
    "AT_SetOptions", "AT_ResetOptions", "AT_SetStorage", "AT_SetCompression", "AT_DropColumn",
    "AT_AddIndex", "AT_AddConstraint", "AT_ValidateConstraint", "AT_AddIndexConstraint",
    "AT_DropConstraint", "AT_AlterConstraint", "AT_AlterColumnType", "AT_ClusterOn", "AT_DropCluster",
    "AT_SetLogged", "AT_SetUnLogged", "AT_SetAccessMethod", "AT_SetTableSpace", "AT_SetRelOptions",
    "AT_ResetRelOptions", "AT_ReplaceRelOptions", "AT_AddIdentity", "AT_SetIdentity", "AT_DropIdentity",
    "AT_AttachPartition", "AT_ReplicaIdentity", "AT_AddInherit", "AT_DropInherit", "AT_DropExpression",
    "AT_AlterColumnGenericOptions", "AT_DetachPartition", "AT_DetachPartitionFinalize",
}) | frozenset(PRIVILEGE_CMDS) | frozenset(TRIGGER_CMDS)
_ALTER_OBJECTS = {"OBJECT_TABLE", "OBJECT_INDEX", "OBJECT_SEQUENCE", "OBJECT_VIEW", "OBJECT_MATVIEW"}
_DROP_OBJECTS = {
    "OBJECT_TABLE", "OBJECT_INDEX", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_FUNCTION", "OBJECT_PROCEDURE",
    "OBJECT_ROUTINE", "OBJECT_TRIGGER", "OBJECT_SEQUENCE", "OBJECT_TYPE", "OBJECT_DOMAIN", "OBJECT_EXTENSION",
    "OBJECT_SCHEMA", "OBJECT_STATISTIC_EXT", "OBJECT_POLICY", "OBJECT_RULE", "OBJECT_FOREIGN_TABLE",
}
_SCHEMA_ELEMENTS = {"CreateStmt", "ViewStmt", "IndexStmt", "CreateSeqStmt"}
_TRANSACTION_HELD = {"TRANS_STMT_PREPARE", "TRANS_STMT_COMMIT_PREPARED", "TRANS_STMT_ROLLBACK_PREPARED"}
_EXPLAINED = {"SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "CreateTableAsStmt"}


def _always(node: Node) -> str | None:
    return None


def _alter_table(node: Node) -> str | None:
    objtype = node.get("objtype", "OBJECT_TABLE")
    if objtype not in _ALTER_OBJECTS:
        what = objtype.removeprefix("OBJECT_").replace("_", " ")
        return f"ALTER {what} ({_commands(node)})"
    unknown = sorted({cmd.get("subtype", "?") for _, cmd in alter_table_cmds(node)} - _ALTER_TABLE_CMDS)
    if unknown or len(list(alter_table_cmds(node))) != len(node.get("cmds", ())):
        return f"ALTER TABLE ({', '.join(u.removeprefix('AT_') for u in unknown) or '?'})"
    return None


def _commands(node: Node) -> str:
    return ", ".join(sorted({cmd.get("subtype", "?").removeprefix("AT_") for _, cmd in alter_table_cmds(node)}))


def _drop(node: Node) -> str | None:
    kind = node.get("removeType", "?")
    return None if kind in _DROP_OBJECTS else f"DROP {kind.removeprefix('OBJECT_').replace('_', ' ')}"


def _rename(node: Node) -> str | None:
    kind = node.get("renameType", "?")
    if kind in ("OBJECT_DATABASE", "OBJECT_TABLESPACE", "OBJECT_SUBSCRIPTION", "OBJECT_PUBLICATION",
                "OBJECT_FOREIGN_SERVER", "OBJECT_FDW", "OBJECT_EVENT_TRIGGER", "OBJECT_LANGUAGE"):
        return f"RENAME of a {kind.removeprefix('OBJECT_').replace('_', ' ')}"
    return None


def _set(node: Node) -> str | None:
    if node.get("kind") == "VAR_RESET_ALL":
        return None  # role and session authorization are not reset by RESET ALL
    name = (node.get("name") or "").lower()
    if name in SAFE_SETTINGS or name in ("role", "session_authorization"):  # roles: role-change
        return None
    return f"SET {name}"


def _transaction(node: Node) -> str | None:
    kind = node.get("kind", "")
    return f"{kind.removeprefix('TRANS_STMT_').replace('_', ' ')} TRANSACTION" if kind in _TRANSACTION_HELD else None


def _sequence(node: Node) -> str | None:
    options = {o.get("DefElem", {}).get("defname") for o in node.get("options", ())}
    return "ALTER SEQUENCE ... RESTART (new rows would reuse ids)" if "restart" in options else None


def _schema(node: Node) -> str | None:
    inner = sorted({kind for elt in node.get("schemaElts", ()) for kind in elt} - _SCHEMA_ELEMENTS)
    return f"CREATE SCHEMA with a nested {', '.join(inner)}" if inner else None


def _explain(node: Node) -> str | None:
    analyze = any(o.get("DefElem", {}).get("defname") == "analyze" for o in node.get("options", ()))
    inner = next(iter(node.get("query", {})), "?")
    return f"EXPLAIN ANALYZE of {inner}" if analyze and inner not in _EXPLAINED else None


UNDERSTOOD: dict[str, Check] = {
    # rows and tables
    "SelectStmt": _always, "InsertStmt": _always, "UpdateStmt": _always, "DeleteStmt": _always,
    "TruncateStmt": _always, "CreateStmt": _always, "CreateTableAsStmt": _always, "AlterTableStmt": _alter_table,
    "RenameStmt": _rename, "DropStmt": _drop, "AlterObjectSchemaStmt": _always, "ExplainStmt": _explain,
    # indexes, views, sequences, types, comments: no data of their own to lose
    "IndexStmt": _always, "ReindexStmt": _always, "ViewStmt": _always, "RefreshMatViewStmt": _always,
    "CreateSeqStmt": _always, "AlterSeqStmt": _sequence, "CreateEnumStmt": _always, "AlterEnumStmt": _always,
    "CompositeTypeStmt": _always, "CreateDomainStmt": _always, "AlterDomainStmt": _always,
    "CreateRangeStmt": _always, "CreateStatsStmt": _always, "AlterStatsStmt": _always, "CommentStmt": _always,
    "CreateSchemaStmt": _schema, "CreateFunctionStmt": _always, "AlterFunctionStmt": _always,
    # session and maintenance
    "VariableSetStmt": _set, "VariableShowStmt": _always, "TransactionStmt": _transaction,
    "ConstraintsSetStmt": _always, "LockStmt": _always, "VacuumStmt": _always, "ClusterStmt": _always,
    # judged by their own forbidden rules
    "DoStmt": _always, "CallStmt": _always, "CopyStmt": _always, "GrantStmt": _always, "GrantRoleStmt": _always,
    "AlterDefaultPrivilegesStmt": _always, "AlterOwnerStmt": _always, "ReassignOwnedStmt": _always,
    "CreatePolicyStmt": _always, "AlterPolicyStmt": _always, "CreateRoleStmt": _always, "AlterRoleStmt": _always,
    "AlterRoleSetStmt": _always, "DropRoleStmt": _always, "DropOwnedStmt": _always, "CreateTrigStmt": _always,
    "CreateEventTrigStmt": _always, "AlterEventTrigStmt": _always, "CreateExtensionStmt": _always,
    "AlterExtensionStmt": _always, "AlterExtensionContentsStmt": _always,
}

_NAMES = {
    "AlterSystemStmt": "ALTER SYSTEM", "LoadStmt": "LOAD", "MergeStmt": "MERGE", "PrepareStmt": "PREPARE",
    "ExecuteStmt": "EXECUTE", "RuleStmt": "CREATE RULE", "DropdbStmt": "DROP DATABASE",
    "CreatedbStmt": "CREATE DATABASE", "NotifyStmt": "NOTIFY", "ListenStmt": "LISTEN", "DiscardStmt": "DISCARD",
    "CheckPointStmt": "CHECKPOINT", "DeclareCursorStmt": "DECLARE CURSOR", "FetchStmt": "FETCH",
    "DefineStmt": "CREATE AGGREGATE / OPERATOR / base TYPE", "CreateCastStmt": "CREATE CAST",
    "CreateForeignServerStmt": "CREATE SERVER", "CreateUserMappingStmt": "CREATE USER MAPPING",
    "CreateFdwStmt": "CREATE FOREIGN DATA WRAPPER", "CreateForeignTableStmt": "CREATE FOREIGN TABLE",
    "ImportForeignSchemaStmt": "IMPORT FOREIGN SCHEMA", "CreatePublicationStmt": "CREATE PUBLICATION",
    "CreateSubscriptionStmt": "CREATE SUBSCRIPTION", "CreateTableSpaceStmt": "CREATE TABLESPACE",
    "SecLabelStmt": "SECURITY LABEL", "AlterTableMoveAllStmt": "ALTER TABLE ALL IN TABLESPACE",
    "CreatePLangStmt": "CREATE LANGUAGE", "AlterDatabaseStmt": "ALTER DATABASE",
    "AlterDatabaseSetStmt": "ALTER DATABASE ... SET",
}


def unanalysable(kind: str, node: Node) -> str | None:
    """Why a statement is outside what the rules understand, or None."""
    test = UNDERSTOOD.get(kind)
    if test is None:
        return f"{_NAMES.get(kind, kind)} is not a statement this check understands"
    reason = test(node)
    return f"{reason} is not something this check understands" if reason else None


def check(ctx):
    for stmt in ctx.statements:
        reason = unanalysable(stmt.kind, stmt.node)
        if reason:
            yield stmt, reason


RULE = Rule(
    code="unknown-statement",
    severity=FORBIDDEN,
    summary="A statement kind (or form) no rule understands needs approval: the check fails closed.",
    hint="Use plain DDL and DML the check understands (the settings SET may change are listed in "
         "handlers/migrations/harmless.py), or have the migration reviewed and approved.",
    check=check, on=(), bad=tuple(BAD), good=tuple(GOOD),
)
