"""What a backup contains, measured in the backup's own snapshot, and how to compare two of those.

`capture_manifest` runs inside a REPEATABLE READ transaction opened by the caller: for a backup it
is the transaction whose snapshot pg_dump was given (`pg_export_snapshot()`), so the manifest
describes exactly the rows in the archive; the restore drill calls it on the restored database and
`compare_manifests` lists the differences.

Content checksums hash values of most types directly and the text of the others (checksum methods
below), so every setting that changes how a value is printed is pinned first (SET LOCAL: gone when
the transaction ends):
- TimeZone 'UTC', DateStyle 'ISO, YMD', IntervalStyle 'postgres': dates, times and intervals.
- extra_float_digits 1: since PostgreSQL 12 any value > 0 prints the shortest text that reads
  back to the exact same float, so both servers print identical text; 1 is also the default.
- bytea_output 'hex', lc_monetary 'C' (money), search_path 'pg_catalog': regclass and other
  reg* values, and the schema inventory's definitions, are then printed fully qualified.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from .. import schemas
from ..errors import DbopsError
from ..schemadiff import RESTORED, major_of, schema_differences

FORMAT_VERSION = 1
INTEGRITY_LEVELS = ("counts", "checksums")
# How a table's content checksum is computed; the manifest records it, and a drill recomputes the
# checksums of the restored copy with the method its manifest names.
ROW_TEXT = "row-text"  # each row's text; what manifests without "checksum_method" used
ROW_VALUES = "row-values"  # each row's values hashed by their type (the text for some types)
CHECKSUM_METHODS = (ROW_TEXT, ROW_VALUES)
_ROW_VALUES_MIN_SERVER = 140000  # hash_record_extended
_BATCH = 200  # tables per UNION ALL query: few round trips, statements of sane size

_PIN_SETTINGS = [
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
    ("lc_monetary", "C"),
    ("search_path", "pg_catalog"),
]

_USER_RELATION = f"{schemas.application('n')} AND {schemas.not_extension_member('pg_class', 'c')}"

_KIND = {"r": "table", "p": "partitioned table", "m": "materialized view", "v": "view", "f": "foreign table"}
_CONSTRAINT_TYPE = {"p": "primary key", "u": "unique", "f": "foreign key", "c": "check", "x": "exclusion",
                    "n": "not null", "t": "trigger"}


def pin_output_settings(conn: psycopg.Connection) -> None:
    for name, value in _PIN_SETTINGS:
        conn.execute("SELECT set_config(%s, %s, true)", (name, value))


# -- capture ------------------------------------------------------------------

class UnknownChecksumMethod(DbopsError):
    """A manifest names a checksum method this dbops cannot compute (a newer dbops wrote it)."""


def checksum_method(manifest: dict) -> str | None:
    """The checksum method a manifest's checksums were made with; None when it has no checksums.
    A manifest older than the "checksum_method" field hashed row text."""
    if manifest.get("integrity_level") != "checksums":
        return None
    return manifest.get("checksum_method") or ROW_TEXT


def capture_manifest(conn: psycopg.Connection, level: str, method: str | None = None) -> dict:
    """Row counts (and content checksums for level "checksums") per table, plus a schema inventory.

    `method`: how to compute the checksums; None picks the best this server offers (a backup), a
    drill passes the one its backup's manifest names (`checksum_method`).
    Must run inside an open REPEATABLE READ transaction so every query sees one snapshot.
    """
    if level not in INTEGRITY_LEVELS:
        raise ValueError(f"integrity level must be one of {INTEGRITY_LEVELS}, not {level!r}")
    pin_output_settings(conn)
    if level == "checksums":
        method = method or best_checksum_method(conn)
        if method not in CHECKSUM_METHODS:
            raise UnknownChecksumMethod(f"the manifest's checksums were made with method {method!r}, which this "
                                        f"dbops does not know (it knows {', '.join(CHECKSUM_METHODS)}): "
                                        "upgrade dbops to check this backup's content")
    else:
        method = None
    tables = data_tables(conn)
    measured = measure_tables(conn, tables, method)
    return {
        # What the schema inventory's shape depends on: compare_manifests normalises across majors.
        "server_version_num": int(conn.execute("SELECT current_setting('server_version_num')").fetchone()[0]),
        "integrity_level": level,
        "checksum_method": method,
        "tables": [
            {"schema": s, "name": n, "rows": measured[(s, n)][0], "checksum": measured[(s, n)][1]}
            for s, n in tables
        ],
        "schema": capture_schema(conn),
    }


def best_checksum_method(conn: psycopg.Connection) -> str:
    version = int(conn.execute("SELECT current_setting('server_version_num')").fetchone()[0])
    return ROW_VALUES if version >= _ROW_VALUES_MIN_SERVER else ROW_TEXT


def data_tables(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """Tables that hold rows: plain tables and leaf partitions (a partitioned parent holds none)."""
    rows = conn.execute(f"""
        SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND {_USER_RELATION}
        ORDER BY 1, 2""").fetchall()
    return [(s, n) for s, n in rows]


def measure_tables(conn: psycopg.Connection, tables: list[tuple[str, str]],
                   method: str | None) -> dict[tuple[str, str], tuple[int, str | None]]:
    """(rows, checksum hex or None) per table, a batch of tables per query; method None: counts only.

    ONLY: an inheritance parent is counted without its children, which are counted themselves.
    The checksum is the sum of a 64-bit hash of each row, mod 2^64: independent of row order (a
    restore writes rows in another physical order) and, unlike XOR, of duplicate rows.
    """
    columns = table_columns(conn) if method == ROW_VALUES else {}
    result: dict[tuple[str, str], tuple[int, str | None]] = {}
    for start in range(0, len(tables), _BATCH):
        batch = tables[start:start + _BATCH]
        parts = []
        for i, (schema, name) in enumerate(batch):
            if method is None:
                checksum = sql.SQL("NULL::numeric")
            else:
                row_hash = (_row_values_hash(columns.get((schema, name), [])) if method == ROW_VALUES
                            else _ROW_TEXT_HASH)
                checksum = sql.SQL("coalesce(sum({}), 0)").format(row_hash)
            parts.append(sql.SQL("SELECT {i}::int, count(*), {checksum} FROM ONLY {table} AS t").format(
                i=sql.Literal(i), checksum=checksum, table=sql.Identifier(schema, name)))
        for i, rows, total in conn.execute(sql.SQL(" UNION ALL ").join(parts)).fetchall():
            checksum = None if total is None else f"{int(total) % 2**64:016x}"
            result[batch[i]] = (int(rows), checksum)
    return result


# ROW(t.*): the whole row even when a column is named `t` (plain `t` would be that column).
_ROW_TEXT_HASH = sql.SQL("hashtextextended(ROW(t.*)::text, 0)")

# Base types whose hash function tells apart every two values that differ (a changed byte changes
# the hash), with the type to hash them as. Left out, and hashed as their text instead: types with
# no hash function (point, json, money, ...) and those whose equality is looser than their value:
# numeric (1.5 = 1.50), float (0 = -0), interval ('1 day' = '24 hours'), jsonb (holds numerics),
# arrays (dimensions are not hashed), enums and reg* types (their hash is of an OID another
# database numbers otherwise), citext and other extension types.
_HASHED_AS = {"bool": "bool", "int2": "int2", "int4": "int4", "int8": "int8", "oid": "oid", "char": "char",
              "name": "name", "text": "text", "varchar": "text", "bpchar": "bpchar", "bytea": "bytea",
              "date": "date", "time": "time", "timetz": "timetz", "timestamp": "timestamp",
              "timestamptz": "timestamptz", "uuid": "uuid", "inet": "inet", "cidr": "inet",
              "macaddr": "macaddr", "macaddr8": "macaddr8"}
_COLLATABLE = {"name", "text", "bpchar"}


def table_columns(conn: psycopg.Connection) -> dict[tuple[str, str], list[tuple[str, str | None]]]:
    """Each data table's columns in order: (name, type to hash its values as, or None for its text).

    A domain is hashed as its base type. Decided by type alone, so the restored copy decides the same.
    """
    rows = conn.execute(f"""
        SELECT n.nspname, c.relname, a.attname,
               CASE WHEN bt.typnamespace = 'pg_catalog'::regnamespace AND bt.typtype = 'b' THEN bt.typname END
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_type ty ON ty.oid = a.atttypid
        JOIN pg_type bt ON bt.oid = CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE ty.oid END
        WHERE c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped AND {_USER_RELATION}
        ORDER BY 1, 2, a.attnum""").fetchall()
    columns: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
    for schema, table, column, base in rows:
        columns.setdefault((schema, table), []).append((column, _HASHED_AS.get(base)))
    return columns


def _row_values_hash(columns: list[tuple[str, str | None]]) -> sql.Composable:
    """A 64-bit hash of the row of table alias `t`: its columns' values, each named `t.column` (no
    column name can stand for the row), hashed together in order by hash_record_extended.

    COLLATE "C": text is hashed by its bytes, never by a nondeterministic collation's sort key. The
    record's hash is a weighted sum of its columns' hashes, so summed over rows it would not see
    two rows swapping a column's values; hashint8extended's seed mixes it into a new 64-bit value.
    """
    values = []
    for column, hashed_as in columns:
        ref = sql.SQL("t.{}").format(sql.Identifier(column))
        if hashed_as is None:
            values.append(sql.SQL('CAST({} AS pg_catalog.text) COLLATE "C"').format(ref))
        elif hashed_as in _COLLATABLE:
            values.append(sql.SQL('CAST({} AS {}) COLLATE "C"').format(ref, sql.Identifier("pg_catalog", hashed_as)))
        else:
            values.append(sql.SQL("CAST({} AS {})").format(ref, sql.Identifier("pg_catalog", hashed_as)))
    return sql.SQL("hashint8extended(0, hash_record_extended(ROW({}), 0))").format(sql.SQL(", ").join(values))


def capture_schema(conn: psycopg.Connection) -> dict:
    return {
        "tables": schema_tables(conn),
        "columns": schema_columns(conn),
        "indexes": schema_indexes(conn),
        "constraints": schema_constraints(conn),
        "sequences": schema_sequences(conn),
    }


def schema_tables(conn: psycopg.Connection) -> list[dict]:
    rows = conn.execute(f"""
        SELECT n.nspname, c.relname, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'm', 'v', 'f') AND {_USER_RELATION}
        ORDER BY 1, 2""").fetchall()
    return [{"schema": s, "name": n, "kind": _KIND[k]} for s, n, k in rows]


def schema_columns(conn: psycopg.Connection) -> list[dict]:
    rows = conn.execute(f"""
        SELECT n.nspname || '.' || c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(ad.adbin, ad.adrelid)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        WHERE c.relkind IN ('r', 'p', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped AND {_USER_RELATION}
        ORDER BY 1, a.attnum""").fetchall()
    return [{"table": t, "name": n, "type": ty, "not_null": nn, "default": d} for t, n, ty, nn, d in rows]


def schema_indexes(conn: psycopg.Connection) -> list[dict]:
    """Each index with its definition; also whether it is valid (pg_dump leaves out an invalid one,
    what a failed CREATE INDEX CONCURRENTLY leaves), unique, and its key columns in order (None for
    an expression), so a restore drill can tell an index lost in the restore from one the source lacks."""
    rows = conn.execute(f"""
        SELECT n.nspname || '.' || c.relname, i.relname, pg_get_indexdef(x.indexrelid),
               n.nspname, c.relname, x.indisvalid AND x.indisready, x.indisunique,
               array(SELECT a.attname FROM unnest(x.indkey[0:x.indnkeyatts - 1]) WITH ORDINALITY k(attnum, ord)
                     LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                     ORDER BY k.ord)
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {_USER_RELATION}
        ORDER BY 1, 2""").fetchall()
    # "table" is schema-qualified (the key every part of the manifest uses); "schema" and "relation"
    # say the same without guessing where a name with a dot in it splits.
    return [{"table": t, "name": n, "definition": d, "schema": schema, "relation": relation, "valid": valid,
             "unique": unique, "columns": list(columns)}
            for t, n, d, schema, relation, valid, unique, columns in rows]


def schema_constraints(conn: psycopg.Connection) -> list[dict]:
    rows = conn.execute(f"""
        SELECT n.nspname || '.' || c.relname, k.conname, k.contype::text, pg_get_constraintdef(k.oid),
               k.convalidated
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {_USER_RELATION}
        ORDER BY 1, 2, 3""").fetchall()
    return [{"table": t, "name": n, "type": _CONSTRAINT_TYPE.get(ty, ty), "definition": d, "validated": v}
            for t, n, ty, d, v in rows]


def schema_sequences(conn: psycopg.Connection) -> list[dict]:
    """Each sequence, its value, and the largest value of the column that owns it (serial/identity).

    `value` is last_value, None when the sequence was never used (or cannot be read). Sequences are
    not transactional: this is the value when read, not as of the snapshot, which is why a restore
    is checked as "value >= column_max" and never for equality.
    """
    rows = conn.execute(f"""
        SELECT n.nspname || '.' || c.relname, s.last_value,
               tn.nspname, tc.relname, a.attname, format_type(a.atttypid, NULL)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_sequences s ON s.schemaname = n.nspname AND s.sequencename = c.relname
        LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
             AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')
        LEFT JOIN pg_class tc ON tc.oid = d.refobjid LEFT JOIN pg_namespace tn ON tn.oid = tc.relnamespace
        LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE c.relkind = 'S' AND {_USER_RELATION}
        ORDER BY 1""").fetchall()
    sequences = []
    owned = []
    for name, value, t_schema, t_name, column, column_type in rows:
        entry = {"name": name, "value": value, "column_max": None,
                 "owned_by_column": f"{t_schema}.{t_name}.{column}" if column else None}
        if column and column_type in ("smallint", "integer", "bigint"):
            owned.append((len(sequences), t_schema, t_name, column))
        sequences.append(entry)
    # One query for every owned column's max; with the usual primary key index each is a quick look-up.
    for start in range(0, len(owned), _BATCH):
        batch = owned[start:start + _BATCH]
        parts = [sql.SQL("SELECT {i}::int, max({col})::bigint FROM {table}").format(
            i=sql.Literal(i), col=sql.Identifier(column), table=sql.Identifier(schema, table))
            for i, schema, table, column in batch]
        for i, top in conn.execute(sql.SQL(" UNION ALL ").join(parts)).fetchall():
            sequences[i]["column_max"] = top
    return sequences


# -- compare ------------------------------------------------------------------

def compare_manifests(expected: dict, actual: dict) -> list[str]:
    """Human-readable differences between a backup's manifest and a restored database's; [] = same.

    Accepts bare manifests (capture_manifest) or whole BackupManifest documents (to_dict).
    """
    diffs: list[str] = []
    exp_method, act_method = checksum_method(expected), checksum_method(actual)
    if exp_method and act_method and exp_method != act_method:
        # Checksums made two ways differ whatever the rows: comparing them would blame the data.
        diffs.append(f"content checksums: the backup's were made with method {exp_method}, the restored "
                     f"database's with {act_method}; they cannot be compared")
        expected = {**expected, "tables": [{**t, "checksum": None} for t in expected.get("tables", [])]}
    diffs += _compare_table_data(expected.get("tables", []), actual.get("tables", []))
    diffs += schema_differences(expected.get("schema", {}), actual.get("schema", {}), RESTORED,
                                sequence_values=True,
                                majors=(major_of(expected.get("server_version_num")),
                                        major_of(actual.get("server_version_num"))))
    return diffs


def _compare_table_data(expected: list[dict], actual: list[dict]) -> list[str]:
    diffs = []
    exp = {f"{t['schema']}.{t['name']}": t for t in expected}
    act = {f"{t['schema']}.{t['name']}": t for t in actual}
    for key in sorted(exp.keys() - act.keys()):
        diffs.append(f"table {key}: missing from the restored database ({exp[key]['rows']} rows expected)")
    for key in sorted(act.keys() - exp.keys()):
        diffs.append(f"table {key}: in the restored database ({act[key]['rows']} rows) but not in the backup")
    for key in sorted(exp.keys() & act.keys()):
        e, a = exp[key], act[key]
        if e["rows"] != a["rows"]:
            diffs.append(f"table {key}: {e['rows']} rows expected, {a['rows']} restored")
        elif e.get("checksum") and a.get("checksum") and e["checksum"] != a["checksum"]:
            diffs.append(f"table {key}: same row count ({e['rows']}) but the content differs "
                         f"(checksum {e['checksum']} expected, {a['checksum']} restored)")
    return diffs


# -- the whole document -------------------------------------------------------

@dataclass
class ArchiveInfo:
    format: str = "custom"  # "custom" (-Fc, one file) or "directory" (-Fd, stored as one tar file)
    compression: str = ""  # e.g. "zstd:3", "gzip:6"
    path: str = ""  # local path, or the object key when storage is "s3"
    size: int = 0  # bytes as stored (after encryption)
    sha256: str = ""  # of the bytes as stored
    encrypted: bool = False
    storage: str = "local"  # "local" or "s3"
    key: str | None = None  # S3 object key (storage "s3"); never an encryption key
    # How it was encrypted (algorithm, chunk size, key id): what decrypting needs besides the key itself.
    encryption: dict | None = None

    def to_dict(self) -> dict:
        return {"format": self.format, "compression": self.compression, "path": self.path, "size": self.size,
                "sha256": self.sha256, "encrypted": self.encrypted, "storage": self.storage, "key": self.key,
                "encryption": self.encryption}

    @classmethod
    def from_dict(cls, d: dict) -> "ArchiveInfo":
        return cls(**{k: d[k] for k in ("format", "compression", "path", "size", "sha256", "encrypted",
                                         "storage", "key", "encryption") if k in d})


@dataclass
class BackupManifest:
    backup_id: str
    target: str
    database: str
    created_at: str  # ISO 8601, UTC
    snapshot: str
    server_version: str
    server_version_num: int
    pg_dump_version: str
    archive: ArchiveInfo = field(default_factory=ArchiveInfo)
    integrity_level: str = "counts"
    checksum_method: str | None = None  # level "checksums" only; None there: ROW_TEXT (an older manifest)
    tables: list[dict] = field(default_factory=list)
    schema: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    # What the catalog row says, kept here too so a catalog rebuilt from storage says the same.
    requested_by: str = ""
    scheduled: bool = False
    duration_s: float | None = None
    # The client programs that made the backup, e.g. {"pg_dump": "16.15"}; {} from an older dbops.
    client_versions: dict[str, str] = field(default_factory=dict)
    # Where it was dumped when not from the target itself: {"kind": "render-recovery", "recovery_time",
    # "instance", "plan"}: a Render point-in-time copy of the target at recovery_time.
    source: dict | None = None

    @property
    def total_rows(self) -> int:
        return sum(t["rows"] for t in self.tables)

    def to_dict(self) -> dict:
        doc = {
            "format_version": self.format_version, "backup_id": self.backup_id, "target": self.target,
            "database": self.database, "created_at": self.created_at, "snapshot": self.snapshot,
            "server_version": self.server_version, "server_version_num": self.server_version_num,
            "pg_dump_version": self.pg_dump_version, "archive": self.archive.to_dict(),
            "integrity_level": self.integrity_level, "tables": self.tables, "schema": self.schema,
            "requested_by": self.requested_by, "scheduled": self.scheduled, "duration_s": self.duration_s,
        }
        if self.checksum_method is not None:  # absent, as an older dbops wrote it, when not known
            doc["checksum_method"] = self.checksum_method
        if self.client_versions:  # absent, as an older dbops wrote it, when not known
            doc["client_versions"] = dict(self.client_versions)
        if self.source is not None:  # absent for a dump of the target itself
            doc["source"] = self.source
        return doc

    @classmethod
    def from_dict(cls, d: dict) -> "BackupManifest":
        version = d.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ValueError(f"backup manifest format {version} is not known to this dbops "
                             f"(it reads format {FORMAT_VERSION})")
        return cls(
            backup_id=d["backup_id"], target=d["target"], database=d["database"], created_at=d["created_at"],
            snapshot=d.get("snapshot", ""), server_version=d.get("server_version", ""),
            server_version_num=int(d.get("server_version_num", 0)), pg_dump_version=d.get("pg_dump_version", ""),
            archive=ArchiveInfo.from_dict(d.get("archive", {})), integrity_level=d.get("integrity_level", "counts"),
            checksum_method=d.get("checksum_method"), tables=list(d.get("tables", [])),
            schema=dict(d.get("schema", {})), format_version=version,
            requested_by=str(d.get("requested_by") or ""), scheduled=bool(d.get("scheduled", False)),
            duration_s=d.get("duration_s"), client_versions=dict(d.get("client_versions") or {}),
            source=d.get("source"),
        )


def describe_source(source: dict) -> str:
    """"Render recovery copy at 2025-06-01T02:45:00Z (dbops-backup-..., plan basic_1gb)"."""
    if source.get("kind") == "render-recovery":
        return (f"Render recovery copy at {source.get('recovery_time', '?')} ({source.get('instance', '?')}, "
                f"plan {source.get('plan', '?')})")
    return str(source.get("kind", "?"))
