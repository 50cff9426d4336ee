"""`indexes suggest` against the bare work it needs, in the same run and on the same archive.

    .venv/bin/python bench/advice.py [--rows 2000000] [--jobs 2] [--repeat 1]

Builds a database of a few hundred MB (a "Notes" table whose "UserId" lookups miss an index, an
indexed "Users" lookup, a boolean half the rows match), runs a workload through psycopg with
server-side parameters (pg_stat_statements records $1) and takes a custom-format archive. Then:
- bare: a fresh instance, `pg_restore --jobs N`, ANALYZE, `CREATE INDEX` of the suggested indexes,
  and the same EXPLAIN (ANALYZE, BUFFERS) runs with the same number of value sets, before and after;
- suggest: read_workload() on the source and suggest() on the archive (copy, candidates, proof).
Prints both and the ratio suggest/bare (aim: <= 1.3).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from handlers.indexes import IndexSettings  # noqa: E402
from handlers.indexes.advice import AdviceSettings, read_workload, suggest  # noqa: E402
from handlers.postgres import TemporaryInstance, pg_tool  # noqa: E402

LOOKUP = 'SELECT "Id", "Title" FROM "Notes" WHERE "UserId" = %s ORDER BY "CreatedAt" DESC LIMIT %s'
COUNT = 'SELECT count(*) FROM "Notes" WHERE "UserId" = %s'
INDEXED = 'SELECT "Id", "Name" FROM "Users" WHERE "Email" = %s'
HALF = 'SELECT count(*) FROM "Notes" WHERE "IsArchived" = %s'
SETTINGS = {"maintenance_work_mem": "256MB", "autovacuum": "off", "wal_level": "minimal", "max_wal_senders": "0"}


def build(dsn: str, rows: int) -> None:
    users = max(rows // 100, 10)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute('CREATE TABLE "Users" ("Id" int PRIMARY KEY, "Email" text NOT NULL, "Name" text)')
        conn.execute('CREATE INDEX "IX_Users_Email" ON "Users" ("Email")')
        conn.execute(f"""INSERT INTO "Users" SELECT g, 'user' || g || '@example.com', 'name ' || g
                         FROM generate_series(1, {users}) g""")
        conn.execute('CREATE TABLE "Notes" ("Id" bigint PRIMARY KEY, "UserId" int NOT NULL, "CreatedAt" timestamptz '
                     'NOT NULL, "IsArchived" boolean NOT NULL, "Title" text, "Body" text)')
        conn.execute(f"""INSERT INTO "Notes" SELECT g, (g::bigint * 7919) % {users} + 1,
                             timestamptz '2024-01-01' + g * interval '1 second', g % 2 = 0, 'title ' || g,
                             repeat(md5(g::text), 3)
                         FROM generate_series(1, {rows}) g""")
        conn.execute("VACUUM ANALYZE")
        conn.execute("SELECT pg_stat_statements_reset()")
        for i in range(30):
            for statement, args in ((LOOKUP, (i + 1, 20)), (COUNT, (i + 1,)), (INDEXED, (f"user{i}@example.com",)),
                                    (HALF, (i % 2 == 0,))):
                conn.execute(statement, args).fetchall()


def bare(archive: Path, work: Path, jobs: int, advice, samples: int) -> dict:
    """The work suggest cannot avoid, with the plain tools: restore, ANALYZE, the suggested indexes, the EXPLAINs."""
    t0 = time.monotonic()
    inst = TemporaryInstance(purpose="bench", parent=work, settings=SETTINGS).start()
    try:
        with psycopg.connect(inst.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE copy")
        t1 = time.monotonic()
        subprocess.run([pg_tool("pg_restore"), "--no-owner", "--no-acl", "--jobs", str(jobs),
                        "--dbname", inst.dsn("copy"), str(archive)], check=True)
        t2 = time.monotonic()
        with psycopg.connect(inst.dsn("copy"), autocommit=True) as conn:
            conn.execute("ANALYZE")
            t3 = time.monotonic()
            served = [(q.query, s) for s in advice.suggestions for q in s.queries if q.after]
            explain_s = _explains(conn, served, samples)
            for s in advice.suggestions:
                conn.execute(s.statement.replace(" CONCURRENTLY", ""))
            t4 = time.monotonic()
            explain_s += _explains(conn, served, samples)
    finally:
        inst.stop()
    t5 = time.monotonic()
    return {"total_s": t5 - t0, "start_s": t1 - t0, "restore_s": t2 - t1, "analyze_s": t3 - t2,
            "index_s": t4 - t3 - explain_s / 2, "explain_s": explain_s}


def _explains(conn: psycopg.Connection, served: list, samples: int) -> float:
    """The same EXPLAIN (ANALYZE, BUFFERS) runs as suggest: a warm-up and `samples` value sets each."""
    t0 = time.monotonic()
    cur = psycopg.RawCursor(conn)
    for text, _ in served:
        values = [str(n + 1) for n in range(text.count("$"))]
        for _ in range(samples + 1):
            cur.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {text}", values)
            cur.fetchall()
    return time.monotonic() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    settings = AdviceSettings()
    with tempfile.TemporaryDirectory(prefix="dbops-bench-advice-") as tmp:
        work = Path(tmp)
        source = TemporaryInstance(purpose="bench", parent=work,
                                   settings={"shared_preload_libraries": "pg_stat_statements"}).start()
        try:
            with psycopg.connect(source.dsn(), autocommit=True) as conn:
                conn.execute("CREATE DATABASE asidenote")
            dsn = source.dsn("asidenote")
            t = time.monotonic()
            build(dsn, args.rows)
            archive = work / "bench.dump"
            subprocess.run([pg_tool("pg_dump"), "-Fc", "--compress", "1", "-f", str(archive), "--dbname", dsn],
                           check=True)
            with psycopg.connect(dsn) as conn:
                size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            print(f"database {size / 1e6:.0f} MB, {args.rows:,} notes, archive {archive.stat().st_size / 1e6:.0f} MB "
                  f"(built in {time.monotonic() - t:.0f} s)", flush=True)
            bares, suggests = [], []
            for _ in range(args.repeat):
                t0 = time.monotonic()
                with psycopg.connect(dsn) as conn:
                    conn.read_only = True
                    workload = read_workload(conn, IndexSettings(), "bench")
                advice = suggest(workload, archive, backup_id="bench", backup_created_at=None, settings=settings,
                                 work_dir=work, jobs=args.jobs)
                suggests.append(time.monotonic() - t0)
                steps = ", ".join(f"{k} {v:.2f} s" for k, v in advice.timings.items())
                print(f"suggest: {suggests[-1]:.2f} s ({steps}, {advice.candidates_built} candidates built): "
                      + "; ".join(f"{s.name} {s.main.proof_line()}" for s in advice.suggestions), flush=True)
                if not advice.suggestions:
                    print("no suggestion: the bench's missing index was not found")
                    return 1
                bares.append(bare(archive, work, args.jobs, advice, settings.samples))
                print("bare:    " + ", ".join(f"{k} {v:.2f} s" for k, v in bares[-1].items()), flush=True)
        finally:
            source.stop()
    ratio = min(suggests) / min(b["total_s"] for b in bares)
    pairs = sorted(s / b["total_s"] for s, b in zip(suggests, bares))
    print(f"ratio suggest/bare: {ratio:.2f}x fastest/fastest, {pairs[len(pairs) // 2]:.2f}x median of the "
          f"{len(pairs)} back-to-back pairs (aim <= 1.3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
