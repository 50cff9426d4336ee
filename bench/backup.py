"""How much a `dbops backup` costs over the bare `pg_dump -Fc`, measured in one run.

    python bench/backup.py --scale 2        # ~400,000 rows; --scale 17 is about 1 GB

On a generated asidenote database (handlers.demo_data, in a private TemporaryInstance) it times:
- bare:        pg_dump -Fc -f file                      (what a plain cron job would run)
- counts:      dbops backup, integrity "counts"          (row counts only: a changed row goes unnoticed)
- checksums:   dbops backup, integrity "checksums"       (the default; aim: within 1.15x of bare)
- directory:   dbops backup, -Fd -j N, integrity counts  (aim: faster than bare)
- streamed:    dbops backup to S3 (moto's server, over HTTP), integrity checksums: pg_dump's output
               uploaded as it is written (aim: within 1.15x of bare), with the peak local disk the
               backup used, sampled every 20 ms (aim: under 3x the part size)
and, for reference, counts with the full-read verification that follows a backup by default.
Each of --repeat rounds runs every variant once, in turn, so a busy spell on the shared machine
slows all of them rather than one; the best time of each is kept. The load average is printed
before and after: compare runs made under similar load.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.core.state import migrate  # noqa: E402
from handlers import demo_data  # noqa: E402
from handlers.backup import BackupCatalog, BackupSettings, S3Settings, take_backup  # noqa: E402
from handlers.backup.storage import size_of  # noqa: E402
from handlers.fmt import size as human_bytes  # noqa: E402
from handlers.postgres import TemporaryInstance, pg_tool  # noqa: E402
from handlers.target import Target  # noqa: E402


def best_in_rounds(repeat: int, variants: list[tuple[str, callable]]) -> dict[str, tuple[float, int]]:
    """Best (seconds, size) per variant, over `repeat` rounds of every variant in turn."""
    results = {name: (float("inf"), 0) for name, _ in variants}
    for _ in range(repeat):
        for name, run in variants:
            seconds, size = run()
            results[name] = (min(results[name][0], seconds), size)
    return results


class PeakDisk:
    """The most bytes a folder's files held at once, sampled every 20 ms while it runs."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.peak = folder, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, size_of(self.folder))

    def __enter__(self) -> "PeakDisk":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def moto_s3():
    """A local S3 (moto's server) and a bucket in it; (endpoint, client, server)."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ["DBOPS_S3_ACCESS_KEY_ID"], os.environ["DBOPS_S3_SECRET_ACCESS_KEY"] = "bench", "bench-secret"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                          aws_secret_access_key="bench-secret")
    client.create_bucket(Bucket="bench")
    return endpoint, client, server


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=2, help="demo data scale (1 = ~200,000 rows; 17 = ~1 GB)")
    parser.add_argument("--jobs", type=int, default=max(2, min(4, os.cpu_count() or 2)),
                        help="pg_dump -j for the directory format")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--part-size-mb", type=int, default=64, help="backup.s3.part_size_mb of the streamed variant")
    args = parser.parse_args()
    endpoint, s3, s3_server = moto_s3()

    with TemporaryInstance("bench-backup") as instance, tempfile.TemporaryDirectory(prefix="dbops-bench-") as tmp:
        work = Path(tmp)
        demo_data.create_database(instance.dsn(), "asidenote")
        demo_data.create_database(instance.dsn(), "state")
        t0 = time.monotonic()
        demo_data.load(instance.dsn("asidenote"), args.scale)
        migrate.apply(instance.dsn("state"))
        dsn = instance.dsn("asidenote")
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            db_size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        print(f"scale {args.scale}: database {human_bytes(db_size)}, loaded in {time.monotonic() - t0:.1f} s")
        catalog = BackupCatalog(instance.dsn("state"))
        target = Target("bench", dsn)

        def bare() -> tuple[float, int]:
            out = work / "bare.dump"
            start = time.monotonic()
            subprocess.run([pg_tool("pg_dump"), "-Fc", "-f", str(out), "-d", dsn], check=True)
            seconds = time.monotonic() - start
            size = out.stat().st_size
            out.unlink()
            return seconds, size

        def dbops(**overrides) -> callable:
            def run() -> tuple[float, int]:
                folder = work / "dbops"
                settings = BackupSettings(dir=folder, min_free_mb=0, **{"verify_after": False, **overrides})
                start = time.monotonic()
                result = take_backup(target, settings, catalog, "bench")
                seconds = time.monotonic() - start
                for p in folder.iterdir():
                    p.unlink()
                return seconds, result.manifest.archive.size
            return run

        peaks: list[tuple[int, int]] = []  # (sampled, reported by the backup) per streamed run

        def streamed() -> tuple[float, int]:
            folder = work / "streamed"
            folder.mkdir(exist_ok=True)
            settings = BackupSettings(dir=folder, min_free_mb=0, verify_after=False, integrity="checksums",
                                      storage="s3", s3=S3Settings(bucket="bench", prefix="bench", endpoint_url=endpoint,
                                                                  region="us-east-1", part_size_mb=args.part_size_mb))
            with PeakDisk(folder) as disk:
                start = time.monotonic()
                result = take_backup(target, settings, catalog, "bench")
                seconds = time.monotonic() - start
            peaks.append((disk.peak, result.peak_disk or 0))
            for obj in s3.list_objects_v2(Bucket="bench").get("Contents", []):
                s3.delete_object(Bucket="bench", Key=obj["Key"])
            return seconds, result.manifest.archive.size

        variants = [
            ("bare pg_dump -Fc", bare),
            ("dbops backup (counts)", dbops(integrity="counts")),
            ("dbops backup (checksums)", dbops(integrity="checksums")),
            (f"dbops backup -Fd -j {args.jobs} (counts)", dbops(integrity="counts", format="directory",
                                                                jobs=args.jobs)),
            ("dbops backup (counts) + verify", dbops(integrity="counts", verify_after=True)),
            ("dbops backup streamed to S3 (checksums)", streamed),
        ]
        print(f"load average before: {load_average()}")
        results = best_in_rounds(args.repeat, variants)
        print(f"load average after:  {load_average()}")
        base = results["bare pg_dump -Fc"][0]
        print(f"{'variant':<40} {'seconds':>8} {'size':>10} {'x bare':>7}")
        for name, (seconds, size) in results.items():
            print(f"{name:<40} {seconds:8.2f} {human_bytes(size):>10} {seconds / base:7.2f}")
        counts = results["dbops backup (counts)"][0] / base
        parallel = results[f"dbops backup -Fd -j {args.jobs} (counts)"][0] / base
        checksums = results["dbops backup (checksums)"][0] / base
        stream = results["dbops backup streamed to S3 (checksums)"][0] / base
        from handlers.backup.stream import stream_part_size

        part = stream_part_size(S3Settings(part_size_mb=args.part_size_mb), int(db_size * 0.6))
        sampled, reported = max(p[0] for p in peaks), max(p[1] for p in peaks)
        print(f"\nchecksums (the default): {checksums:.2f}x bare (aim <= 1.15); counts: {counts:.2f}x; "
              f"directory -j {args.jobs}: {parallel:.2f}x (aim < 1.0)")
        print(f"streamed to S3 (checksums): {stream:.2f}x bare (aim <= 1.15); peak local disk {human_bytes(sampled)} "
              f"sampled, {human_bytes(reported)} by the upload's own count: {sampled / part:.2f}x the part size of "
              f"{human_bytes(part)} (aim < 3)")
    s3_server.stop()


if __name__ == "__main__":
    main()
