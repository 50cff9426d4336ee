"""Bench: the index review on a database with many tables and indexes.

    python bench/indexes.py                 # 2,000 tables, 6,000 indexes (aim: review under 2 s)
    python bench/indexes.py --tables 100    # a quick check

Each table has a primary key, an index on ("A") and one on ("A", "B") (so a
redundant prefix each), and every other table a foreign key without an index:
the review has plenty to find. The state store holds a snapshot from 31 days
ago and one from yesterday, so the unused check runs over a full window.
Prints the review's wall time and its number of catalog queries, which must
not depend on the number of tables.
"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.core.state import migrate  # noqa: E402
from handlers.demo_data import create_database  # noqa: E402
from handlers.indexes import IndexSettings, review, take_snapshot  # noqa: E402
from handlers.postgres import TemporaryInstance  # noqa: E402


def build(dsn: str, tables: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        batch = []
        for n in range(tables):
            fk = f', "ParentId" bigint REFERENCES "Table{n - 1}" ("Id")' if n % 2 else ""
            batch.append(f'CREATE TABLE "Table{n}" ("Id" bigint PRIMARY KEY, "A" int, "B" int, "C" text{fk});'
                         f'CREATE INDEX "IX_Table{n}_A" ON "Table{n}" ("A");'
                         f'CREATE INDEX "IX_Table{n}_A_B" ON "Table{n}" ("A", "B");')
            if len(batch) == 200:
                conn.execute("".join(batch))
                batch = []
        if batch:
            conn.execute("".join(batch))
        conn.execute("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=2000, help="tables to create (3 indexes each)")
    args = parser.parse_args()
    with TemporaryInstance(purpose="bench-indexes",
                           settings={"shared_preload_libraries": "pg_stat_statements"}) as instance:
        create_database(instance.dsn(), "bench")
        create_database(instance.dsn(), "state")
        target, state = instance.dsn("bench"), instance.dsn("state")
        migrate.apply(state)
        t0 = time.monotonic()
        build(target, args.tables)
        print(f"built {args.tables} tables in {time.monotonic() - t0:.1f} s")
        now = datetime.now(timezone.utc)
        with psycopg.connect(target, autocommit=True) as conn:
            index_count = conn.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'").fetchone()[0]
            for days in (31, 1):
                t0 = time.monotonic()
                snap = take_snapshot(conn, state, "bench", now=now - timedelta(days=days))
                print(f"snapshot of {snap.indexes} indexes: {time.monotonic() - t0:.2f} s")
            settings = IndexSettings.from_dict({})
            t0 = time.monotonic()
            result = review(conn, settings, state, "bench", now=now)
            wall = time.monotonic() - t0
            t0 = time.monotonic()
            report = result.to_report()
            render = time.monotonic() - t0
        by_check: dict[str, int] = {}
        for f in result.findings:
            by_check[f.check] = by_check.get(f.check, 0) + 1
        print(f"tables: {result.table_count}, indexes: {index_count} (reviewed {result.index_count})")
        print(f"review wall time: {wall:.3f} s  (aim: under 2 s)  {'OK' if wall < 2 else 'SLOW'}")
        print(f"catalog queries on the target: {result.query_count}; state-store queries: {result.state_queries}")
        print(f"to_report: {render:.3f} s; findings: {by_check}; summary: {report.summary}")


if __name__ == "__main__":
    main()
