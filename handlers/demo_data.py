"""The asidenote-like demo schema and its generated rows (used by `dbops demo`, tests and benches)."""
from __future__ import annotations

from importlib import resources

import psycopg
from psycopg import sql


def schema_sql() -> str:
    return resources.files("handlers.data").joinpath("asidenote_schema.sql").read_text()


def data_sql(scale: int = 1) -> str:
    if scale < 1:
        raise ValueError("scale must be at least 1")
    return (resources.files("handlers.data").joinpath("asidenote_data.sql").read_text()
            .replace(":scale", str(int(scale))))


def load(dsn: str, scale: int = 1, with_data: bool = True) -> None:
    """Create the schema in `dsn` and fill it (about 200,000 rows per unit of scale)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(schema_sql())
        if with_data:
            conn.execute(data_sql(scale))


def create_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
