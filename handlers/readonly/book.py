"""The bot's own list of the read-only roles it manages (a table of the state store). It holds
names, schemas and the last check's verdict; never a password."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import dict_row


@dataclass
class ManagedRole:
    target: str
    role_name: str
    schemas: list[str]
    withheld: list[str]
    created_by: str
    request_id: int | None
    created_at: datetime
    rotated_at: datetime | None
    checked_at: datetime | None
    check_ok: bool | None
    check_summary: str | None


class RoleBook:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def _conn(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row, connect_timeout=10)

    def add(self, target: str, name: str, schemas: list[str], withheld: list[str], created_by: str,
            request_id: int | None = None) -> None:
        with self._conn() as conn:
            conn.execute(
                """INSERT INTO dbops.readonly_roles (target, role_name, schemas, withheld, created_by, request_id)
                   VALUES (%s, %s, %s, %s, %s, %s)
                   ON CONFLICT (target, role_name) DO UPDATE
                   SET schemas = EXCLUDED.schemas, withheld = EXCLUDED.withheld, created_by = EXCLUDED.created_by,
                       request_id = EXCLUDED.request_id, created_at = now(), rotated_at = NULL, checked_at = NULL,
                       check_ok = NULL, check_summary = NULL""",
                (target, name, schemas, withheld, created_by, request_id))

    def get(self, target: str, name: str) -> ManagedRole | None:
        with self._conn() as conn:
            row = conn.execute(
                """SELECT *
                   FROM dbops.readonly_roles
                   WHERE target = %s AND role_name = %s""",
                (target, name)).fetchone()
        return ManagedRole(**row) if row else None

    def all(self, target: str | None = None) -> list[ManagedRole]:
        with self._conn() as conn:
            rows = conn.execute(
                """SELECT *
                   FROM dbops.readonly_roles
                   WHERE %s::text IS NULL OR target = %s
                   ORDER BY target, role_name""",
                (target, target)).fetchall()
        return [ManagedRole(**r) for r in rows]

    def record_check(self, target: str, name: str, ok: bool, summary: str) -> None:
        with self._conn() as conn:
            conn.execute(
                """UPDATE dbops.readonly_roles
                   SET checked_at = now(), check_ok = %s, check_summary = %s
                   WHERE target = %s AND role_name = %s""",
                (ok, summary[:500], target, name))

    def rotated(self, target: str, name: str) -> None:
        with self._conn() as conn:
            conn.execute(
                """UPDATE dbops.readonly_roles
                   SET rotated_at = now()
                   WHERE target = %s AND role_name = %s""",
                (target, name))

    def remove(self, target: str, name: str) -> None:
        with self._conn() as conn:
            conn.execute(
                """DELETE FROM dbops.readonly_roles
                   WHERE target = %s AND role_name = %s""",
                (target, name))
