"""How long the `dbops` command itself takes to start, against a bare Python, measured in one run.

    python bench/cli.py [--repeat 10] [--dbops PATH] [--source-only]

Times, as separate processes, with no database configured (DATABASE_URL and DBOPS_* unset):
- python:        python -c pass                                     (the floor: the interpreter starting)
- help:          dbops --help                                       (aim: under 0.2 s)
- migrate check: dbops migrate check examples/migrations/drop_pinned.up.sql --down ...down.sql
                                                                    (aim: under 0.2 s; no database)
The commands run from the project folder, so its dbops.toml is read and checked as in real use.
They run with compiled bytecode, as an installed package does (pip compiles it at install): the
bytecode goes to a temporary PYTHONPYCACHEPREFIX, written in an untimed first round, even when
PYTHONDONTWRITEBYTECODE is set. --source-only instead compiles the project's modules on every start.
Each of --repeat rounds runs every variant once, in turn, so a busy spell on the shared machine
slows all of them rather than one; the median of each is kept, with the ratio to `python -c pass`
of the same run. The load average is printed before and after: compare runs made under similar load.
Exit status 1 if a command fails (exit 2: a usage or input error) instead of running.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "migrations"
AIM_S = 0.2
# What each command may exit with when it ran: migrate check says 3 (approval required) for a
# migration that drops a column.
RAN = {"python -c pass": {0}, "dbops --help": {0}, "dbops migrate check": {0, 1, 3}}


def dbops_command(given: str | None) -> list[str]:
    """The installed `dbops` script next to this Python (what a user runs), else `python -m`."""
    if given:
        return [given]
    script = Path(sys.executable).parent / "dbops"
    if script.exists():
        return [str(script)]
    found = shutil.which("dbops")
    return [found] if found else [sys.executable, "-m", "bot.frontends.cli"]


def environment(pycache: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOPS_", "DATABASE_URL", "SLACK_", "RENDER_"))}
    env["DBOPS_DOTENV"] = "/nonexistent/.env"  # no .env either: no database, no Slack
    if pycache is None:
        return env | {"PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env | {"PYTHONPYCACHEPREFIX": pycache}


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    return seconds, done.returncode, done.stderr


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10, help="rounds; the median of each variant is kept")
    parser.add_argument("--dbops", help="the dbops command to time (default: the one installed next to this Python)")
    parser.add_argument("--source-only", action="store_true",
                        help="no bytecode cache: every start compiles the project's modules from source")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dbops-bench-pycache-") as pycache:
        return bench(args, None if args.source_only else pycache)


def bench(args: argparse.Namespace, pycache: str | None) -> int:

    dbops = dbops_command(args.dbops)
    up, down = EXAMPLES / "drop_pinned.up.sql", EXAMPLES / "drop_pinned.down.sql"
    variants = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "dbops --help": [*dbops, "--help"],
        "dbops migrate check": [*dbops, "migrate", "check", str(up.relative_to(ROOT)),
                                "--down", str(down.relative_to(ROOT))],
    }
    env = environment(pycache)
    print(f"dbops: {' '.join(dbops)}; "
          f"bytecode: {'compiled from source on each start' if pycache is None else 'cached'}")
    print(f"load average before: {load_average()}")
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_number in range(args.repeat + 1):
        for name, argv in variants.items():
            seconds, code, errors = run_once(argv, env)
            if code not in RAN[name]:
                print(f"{name} exited {code} instead of running:\n{errors}", file=sys.stderr)
                return 1
            if round_number:  # the first round writes the bytecode cache and warms the file cache
                times[name].append(seconds)
    print(f"load average after:  {load_average()}")
    base = statistics.median(times["python -c pass"])
    print(f"{'command':<22} {'median s':>9} {'min s':>7} {'x python':>9}")
    for name, found in times.items():
        median = statistics.median(found)
        print(f"{name:<22} {median:9.3f} {min(found):7.3f} {median / base:9.1f}")
    worst = max(statistics.median(times[name]) for name in ("dbops --help", "dbops migrate check"))
    print(f"\nslowest dbops command: {worst:.3f} s median (aim < {AIM_S} s); "
          f"{args.repeat} rounds, commands run from {ROOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
