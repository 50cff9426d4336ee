"""Running PostgreSQL client programs: credentials through the environment, cancellable, output streamed."""
from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass
from typing import Callable

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo


class DrillCancelled(Exception):
    """Someone asked the drill to stop; the instance is removed all the same."""


def client_args(dsn: str) -> tuple[str, dict[str, str]]:
    """(connection string without the password, environment with PGPASSWORD): nothing secret on argv."""
    params = conninfo_to_dict(dsn)
    password = params.pop("password", None)
    env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE", "PGSERVICE")}
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo(**{k: str(v) for k, v in params.items()}), env


@dataclass
class Finished:
    returncode: int
    lines: list[str]  # stderr and stdout lines, in order


def run_streaming(cmd: list[str], env: dict[str, str], on_line: Callable[[str], None] | None = None,
                  cancel: threading.Event | None = None, cwd: str | None = None) -> Finished:
    """Run `cmd`, feeding each output line to `on_line`; stop it (and raise DrillCancelled) on `cancel`."""
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, errors="replace")
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if on_line:
                try:
                    on_line(line)
                except Exception:  # a progress callback must never break the restore
                    pass

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        while True:
            try:
                proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    raise DrillCancelled()
    except BaseException:
        _stop(proc)
        raise
    reader.join(timeout=10)
    return Finished(proc.returncode, lines)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def server_version_num(dsn: str) -> int:
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        return int(conn.execute("SHOW server_version_num").fetchone()[0])
