"""Restore drill overhead: the drill's total time / (bare pg_restore into a fresh instance + bare verification).

    /tmp/venv/bin/python bench/drill.py --scale 2 [--jobs 2] [--repeat 1] [--no-amcheck] [--heapallindexed]

Builds the demo database at --scale (about 61 MB and 200,000 rows per unit), takes a custom-format
archive and its manifest from one snapshot, then, in the same run and on the same archive:
- baseline: start a fresh instance, `pg_restore --jobs N --no-owner --no-acl`, capture the manifest
  of the restored database (the bare verification queries) and compare it, stop the instance;
- drill: `run_drill` with the same jobs (SHA-256, table of contents, restore, every check, pg_amcheck).
Prints both, the ratio (aim: <= 1.2), and the drill's step times. With --repeat, the ratio of the
fastest of each and the median ratio of back-to-back pairs (this machine is shared: noise is large).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from handlers import demo_data  # noqa: E402
from handlers.backup.manifest import capture_manifest, compare_manifests  # noqa: E402
from handlers.drill import DrillSettings, run_drill  # noqa: E402
from handlers.postgres import TemporaryInstance, pg_tool, tool_version  # noqa: E402


def build_source(work: Path, scale: int) -> tuple[TemporaryInstance, str]:
    source = TemporaryInstance(purpose="bench", parent=work).start()
    demo_data.create_database(source.dsn(), "asidenote")
    dsn = source.dsn("asidenote")
    demo_data.load(dsn, scale)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return source, dsn


def take_backup(dsn: str, archive: Path, compress: str) -> dict:
    with psycopg.connect(dsn) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        subprocess.run([pg_tool("pg_dump"), "--format", "custom", "--compress", compress, "--snapshot", snapshot,
                        "--file", str(archive), "--dbname", dsn], check=True)
        manifest = capture_manifest(conn, "checksums")
        version = conn.execute("SHOW server_version").fetchone()[0]
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    digest = hashlib.sha256()
    with open(archive, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    major, minor = tool_version("pg_dump")
    return {"format_version": 1, "backup_id": "bench", "target": "bench", "database": "asidenote",
            "created_at": datetime.now(timezone.utc).isoformat(), "server_version": version,
            "pg_dump_version": f"{major}.{minor}", "database_size": size,
            "archive": {"format": "custom", "compression": compress, "path": str(archive),
                        "size": archive.stat().st_size, "sha256": digest.hexdigest(), "encrypted": False},
            **manifest}


def baseline(manifest: dict, archive: Path, work: Path, jobs: int) -> dict:
    t0 = time.monotonic()
    inst = TemporaryInstance(purpose="bench", parent=work,
                             settings={"maintenance_work_mem": "256MB", "max_parallel_maintenance_workers": "2",
                                       "autovacuum": "off", "wal_level": "minimal", "max_wal_senders": "0"}).start()
    try:
        with psycopg.connect(inst.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE drill")
        t1 = time.monotonic()
        subprocess.run([pg_tool("pg_restore"), "--no-owner", "--no-acl", "--jobs", str(jobs),
                        "--dbname", inst.dsn("drill"), str(archive)], check=True)
        t2 = time.monotonic()
        with psycopg.connect(inst.dsn("drill")) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            actual = capture_manifest(conn, "checksums")
        diffs = compare_manifests(manifest, actual)
        t3 = time.monotonic()
    finally:
        inst.stop()
    t4 = time.monotonic()
    return {"total_s": t4 - t0, "start_s": t1 - t0, "restore_s": t2 - t1, "verify_s": t3 - t2, "stop_s": t4 - t3,
            "differences": len(diffs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--compress", default="gzip:1", help="pg_dump --compress (this build has gzip only)")
    parser.add_argument("--no-amcheck", action="store_true")
    parser.add_argument("--heapallindexed", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dbops-bench-drill-") as tmp:
        work = Path(tmp)
        t = time.monotonic()
        source, dsn = build_source(work, args.scale)
        try:
            archive = work / "bench.dump"
            manifest = take_backup(dsn, archive, args.compress)
        finally:
            source.stop()
        build_s = time.monotonic() - t
        print(f"scale {args.scale}: database {manifest['database_size'] / 1e6:.0f} MB, "
              f"{sum(t['rows'] for t in manifest['tables']):,} rows, archive {archive.stat().st_size / 1e6:.0f} MB "
              f"(built in {build_s:.0f}s)", flush=True)

        settings = DrillSettings.from_dict({"work_dir": str(work), "jobs": args.jobs, "amcheck": not args.no_amcheck,
                                            "amcheck_heapallindexed": args.heapallindexed})
        bases, drills = [], []
        for _ in range(args.repeat):
            bases.append(baseline(manifest, archive, work, args.jobs))
            b = bases[-1]
            print(f"baseline: {b['total_s']:.2f}s (instance {b['start_s']:.2f}s, pg_restore {b['restore_s']:.2f}s, "
                  f"verification queries {b['verify_s']:.2f}s, stop {b['stop_s']:.2f}s)", flush=True)
            result = run_drill(manifest, archive, settings)
            if not result.passed:
                print(result.to_markdown())
                return 1
            drills.append(result)
            steps = ", ".join(f"{s['step']} {s['seconds']:.2f}s" for s in result.steps)
            print(f"drill:    {result.total_s:.2f}s ({steps})", flush=True)
        base = min(b["total_s"] for b in bases)
        drill = min(d.total_s for d in drills)
        ratio = drill / base
        pairs = sorted(d.total_s / b["total_s"] for d, b in zip(drills, bases))
        median = pairs[len(pairs) // 2]
        print(f"ratio drill/baseline: {ratio:.2f}x fastest/fastest, {median:.2f}x median of the "
              f"{len(pairs)} back-to-back pairs (aim <= 1.2x)")
        if args.json:
            print(json.dumps({"scale": args.scale, "database_bytes": manifest["database_size"],
                              "archive_bytes": archive.stat().st_size, "baseline_s": base, "drill_s": drill,
                              "ratio": ratio, "median_pair_ratio": median, "steps": drills[0].steps}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
