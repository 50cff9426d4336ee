"""Running PostgreSQL client programs (pg_dump, pg_restore, pg_amcheck) safely: the connection handed
over in the environment only (never on the command line), cancellable, output streamed, stopped whole."""
from __future__ import annotations

import functools
import os
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from handlers.errors import Cancelled

from .binaries import sandbox_env
from .errors import PgToolError

if TYPE_CHECKING:
    import psycopg

# libpq connection keywords and the environment variables libpq reads for them.
_ENV_FOR = {
    "host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "dbname": "PGDATABASE", "user": "PGUSER",
    "password": "PGPASSWORD", "passfile": "PGPASSFILE", "service": "PGSERVICE", "options": "PGOPTIONS",
    "application_name": "PGAPPNAME", "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "sslcrl": "PGSSLCRL", "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI", "sslnegotiation": "PGSSLNEGOTIATION", "requirepeer": "PGREQUIREPEER",
    "require_auth": "PGREQUIREAUTH", "channel_binding": "PGCHANNELBINDING", "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME", "gsslib": "PGGSSLIB", "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS", "load_balance_hosts": "PGLOADBALANCEHOSTS",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION", "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "client_encoding": "PGCLIENTENCODING",
}


_KEPT_FROM_THE_BOT = ("HOME", "TMPDIR")


def libpq_env(dsn: str) -> dict[str, str]:
    """The whole environment of a client program that connects as `dsn` says, with nothing on the
    command line and nothing of the bot's: its tokens and keys stay in the bot's process.

    Kept from the bot's environment: HOME (libpq's ~/.postgresql certificates) and TMPDIR. Its
    messages are read by this module, so they are in English (LC_ALL=C). `libpq_env("")` is the
    environment of a program that must not connect anywhere.
    """
    from psycopg.conninfo import conninfo_to_dict  # psycopg loads only when a program is run

    env = sandbox_env() | {name: os.environ[name] for name in _KEPT_FROM_THE_BOT if os.environ.get(name)}
    for key, value in conninfo_to_dict(dsn).items():
        var = _ENV_FOR.get(key)
        if var is None:
            raise PgToolError(f"the connection string uses `{key}`, which dbops cannot hand to a client program "
                                  "without putting it on the command line; remove that parameter")
        if value is not None:
            env[var] = str(value)
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    return env


def last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:400] if lines else ""


def server_facts(conn: psycopg.Connection) -> dict:
    row = conn.execute("SELECT current_setting('server_version'), current_setting('server_version_num')::int,"
                       " current_database(), pg_database_size(current_database())").fetchone()
    return {"server_version": row[0], "server_version_num": row[1], "database": row[2], "database_size": row[3]}


@dataclass
class Finished:
    returncode: int
    lines: list[str]  # stderr and stdout lines, in order


def run_streaming(cmd: list[str], env: dict[str, str], on_line: Callable[[str], None] | None = None,
                  cancel: threading.Event | None = None, cwd: str | None = None) -> Finished:
    """Run `cmd`, feeding each output line to `on_line`; stop it (and raise Cancelled) on `cancel`."""
    proc = start_tool(cmd, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd)
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
                    raise Cancelled(f"cancelled while {Path(cmd[0]).name} ran")
    except BaseException:
        stop_tool(proc)
        raise
    reader.join(timeout=10)
    return Finished(proc.returncode, lines)


def start_tool(cmd: list[str], env: dict[str, str], stdout: Any, stderr: Any, text: bool = False,
               cwd: str | None = None, stdin: Any = subprocess.DEVNULL) -> subprocess.Popen:
    """Start a client program so that it can be stopped whole and never outlives the bot:
    - its own session and process group: pg_dump -j and pg_restore -j workers stop with it;
    - SIGTERM when the thread that started it dies (Linux), so a killed bot leaves no pg_dump
      writing on into a partial file (callers wait for the program in that same thread);
    - umask 077: what it writes (an archive, its folder) is private from its first byte.
    Until its own session starts, the child is a copy of this process running Python (the
    parent-death hook), in the terminal's process group: a Ctrl-C then would raise there. So SIGINT
    is blocked around the fork: the child keeps it blocked (programs are stopped with SIGTERM),
    and this process gets it as soon as the mask is restored."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr,
                                text=text, errors="replace" if text else None, start_new_session=True,
                                umask=0o077, preexec_fn=_parent_death_signal())
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        raise
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    except KeyboardInterrupt:  # the Ctrl-C that came during the fork: the program goes too
        stop_tool(proc)
        raise
    return proc


def stop_tool(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM to the program's whole process group, SIGKILL after `grace_s`; always reaped."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(grace_s)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


def exit_text(tool: str, returncode: int) -> str:
    """"pg_dump was killed (SIGKILL)" or "pg_dump exited with status 1"."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"{tool} was killed ({name})"
    return f"{tool} exited with status {returncode}"


@functools.cache
def _parent_death_signal() -> Callable[[], None] | None:
    """prctl(PR_SET_PDEATHSIG, SIGTERM) for the child, looked up here: nothing may be imported or
    loaded between fork and exec in a program with threads."""
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux: cleanup_incomplete still removes a dead backup's files at the next start

    def set_it() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return set_it

