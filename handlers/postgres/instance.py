"""Throwaway PostgreSQL instances (sandboxes).

A `TemporaryInstance` is a private server that may run hostile SQL, so it is a sandbox:
- it listens on a Unix socket only (no TCP port), in a 0700 folder owned by the server's OS user (a
  short one of its own under /tmp: a socket's path holds at most 107 bytes, and the instance's
  folder may be deep);
- clients authenticate with a password (scram-sha-256), random per instance, never shown;
- initdb, pg_ctl and the server run with a minimal environment (PATH, locale, PGDATA): none of the
  bot's secrets (Slack tokens, DATABASE_URL, the backup key, S3 keys) can be read by a program the
  server starts;
- as root (PostgreSQL refuses to run as root) it runs as an unprivileged service user, from a copy
  of the binaries made for that user, in a folder that user can reach without anybody's folder
  being opened up.

Each instance folder carries a marker file so that a later process can find and remove instances
(and work folders, see `private_work_dir`) left behind by one that died (`remove_leftover_instances`).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

from .asroot import (
    ROOT_BASE_NAME,
    _check_root_owned_dir,
    _root_base,
    _running_as_root,
    _server_install_for_root,
    _service_account,
    _traversable_by,
)
from .binaries import bin_dir, sandbox_env
from .errors import InstanceError, PgBinariesError

MARKER_FILE = "dbops-instance.json"
SUPERUSER = "postgres"
SERVER_SUBDIR = "server"  # data folder and log, owned by the server's OS user
# The socket's folder: directly under /tmp, not $TMPDIR or the instance's folder, either of which
# may be too deep for a socket path (107 bytes at most, `.s.PGSQL.5432.lock` included).
SOCKET_PARENT = Path("/tmp")
SOCKET_PREFIX = "dbops-socket-"


# Settings for a throwaway server: durability buys nothing when the folder is
# deleted afterwards, and costs most of a restore's time.
THROWAWAY_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "listen_addresses": "",
    "max_connections": "100",
    "max_wal_size": "4GB",
    "password_encryption": "scram-sha-256",
}


def _write_marker(path: Path, info: dict) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)


def _owner_info(purpose: str) -> dict:
    pid = os.getpid()
    return {"purpose": purpose, "pid": pid, "pid_started": _process_start(pid), "created": time.time()}


@dataclass
class TemporaryInstance:
    """A private, sandboxed PostgreSQL server in a temporary folder; removed on stop().

    `path` is the instance's folder (the marker, and room for the caller's own files); the server's
    data and log are in `server_dir` (normally `path/server`; as root, when `parent` is closed to
    the service user, a folder under the root base instead); its socket is in `socket_dir`, a
    short private folder under /tmp."""

    purpose: str = "temp"
    parent: Path | None = None
    settings: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    server_dir: Path | None = None
    major: int | None = None  # the PostgreSQL major to run (None: the default binaries)
    _os_user: tuple[int, int] | None = field(default=None, repr=False)
    _password: str | None = field(default=None, repr=False)
    _install: Path | None = field(default=None, repr=False)
    _socket_dir: Path | None = field(default=None, repr=False)

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> "TemporaryInstance":
        parent = Path(self.parent or tempfile.gettempdir())
        parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f"dbops-{self.purpose}-", dir=parent))
        info = _owner_info(self.purpose)
        try:
            self._socket_dir = Path(tempfile.mkdtemp(prefix=SOCKET_PREFIX, dir=SOCKET_PARENT))  # 0700
            info["socket_dir"] = str(self._socket_dir)
            if _running_as_root():
                self._os_user = _service_account()
                self._install = _server_install_for_root(self.major)
                if _traversable_by(parent, *self._os_user):
                    os.chmod(self.path, 0o711)  # our own folder: the server passes through to server/
                    self.server_dir = self.path / SERVER_SUBDIR
                    self.server_dir.mkdir(mode=0o700)
                else:
                    base = _root_base()
                    self.server_dir = Path(tempfile.mkdtemp(prefix=f"dbops-{self.purpose}-", dir=base))
                    info["server_dir"] = str(self.server_dir)
                    _write_marker(base / f"{self.server_dir.name}.json",
                                  {**info, "instance_dir": str(self.path)})
                os.chown(self.server_dir, *self._os_user)
                os.chown(self._socket_dir, *self._os_user)
            else:
                self._install = bin_dir(self.major).parent
                self.server_dir = self.path / SERVER_SUBDIR
                self.server_dir.mkdir(mode=0o700)
            _write_marker(self.path / MARKER_FILE, info)
            self._password = secrets.token_urlsafe(24)
            pwfile = self.server_dir / "pwfile"
            fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self._password + "\n")
            if self._os_user:
                os.chown(pwfile, *self._os_user)
            try:
                self._run([self._tool("initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                           "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C",
                           "--no-sync", "--no-instructions"])
            finally:
                pwfile.unlink(missing_ok=True)
            settings = {**THROWAWAY_SETTINGS, **self.settings, "unix_socket_directories": str(self._socket_dir),
                        "unix_socket_permissions": "0700"}
            with open(self.data_dir / "postgresql.auto.conf", "a") as conf:
                for key, value in settings.items():
                    conf.write(f"{key} = '{value}'\n")
            self._run([self._tool("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.server_dir / "server.log"),
                       "-w", "-t", "60", "start"])
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.path is None:
            return
        path, server_dir, socket_dir = self.path, self.server_dir, self._socket_dir
        self.path = self.server_dir = self._socket_dir = None
        _remove_instance(path, server_dir, socket_dir)

    def __enter__(self) -> "TemporaryInstance":
        return self.start() if self.path is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- access --------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        assert self.server_dir is not None, "instance not started"
        return self.server_dir / "data"

    @property
    def socket_dir(self) -> Path:
        assert self._socket_dir is not None, "instance not started"
        return self._socket_dir

    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER, password: str | None = None) -> str:
        """A connection string for `user` (default: the superuser, with the instance's password).

        It holds a password: a secret like any other, never to be shown. The password is a query
        parameter so that the string's user part stays `user@`."""
        assert self.server_dir is not None and self._password is not None, "instance not started"
        if password is None and user == SUPERUSER:
            password = self._password
        query = f"host={quote(str(self.socket_dir), safe='')}"
        if password is not None:
            query += f"&password={quote(password, safe='')}"
        return f"postgresql://{quote(user, safe='')}@/{quote(dbname, safe='')}?{query}"

    def secrets(self) -> list[str]:
        """What must be scrubbed from any text about this instance."""
        return [self._password] if self._password else []

    def _tool(self, name: str) -> str:
        path = (self._install or bin_dir(self.major).parent) / "bin" / name
        if not path.exists():
            raise PgBinariesError(f"{name} not found in {path.parent}")
        return str(path)

    def _run(self, cmd: list[str]) -> None:
        # Drop root's groups too: with gid 0 a root-owned folder could be open to the server.
        as_user = ({"user": self._os_user[0], "group": self._os_user[1], "extra_groups": []}
                   if self._os_user else {})
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=self.server_dir,
                                env=sandbox_env(self.data_dir), stdin=subprocess.DEVNULL, **as_user)
        if result.returncode != 0:
            log = ""
            log_file = self.server_dir / "server.log" if self.server_dir else None
            if log_file and log_file.exists():
                log = log_file.read_text(errors="replace")[-2000:]
            text = f"{Path(cmd[0]).name} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]} {log}"
            for secret in self.secrets():
                text = text.replace(secret, "***")
            raise InstanceError(text.strip())


@contextmanager
def private_work_dir(purpose: str, parent: Path | None = None) -> Iterator[Path]:
    """A 0700 folder for files that must not outlive their job (a copy of a backup, a dump), with the
    owner marker, so that if the process is killed `remove_leftover_instances(parent, purpose)` finds
    and removes it at the next start. Removed on exit."""
    parent = Path(parent or tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"dbops-{purpose}-", dir=parent))
    try:
        _write_marker(path / MARKER_FILE, _owner_info(purpose))
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- stopping and removing -------------------------------------------------------------------

def _remove_instance(path: Path, server_dir: Path | None, socket_dir: Path | None = None) -> None:
    """Stop the instance's server and remove its folders; the socket's folder, when not given, is
    the one its marker names (an instance left behind by a process that died)."""
    if socket_dir is None:
        markers = [path / MARKER_FILE]
        if server_dir is not None and server_dir.parent.name == ROOT_BASE_NAME:
            markers.append(Path(f"{server_dir}.json"))
        socket_dir = next((d for m in markers if (d := _socket_dir_named(_read_own_marker(m) or {}))), None)
    for folder in dict.fromkeys(d for d in (server_dir, path / SERVER_SUBDIR) if d is not None):
        _stop_server(folder / "data")
    if server_dir is not None and server_dir.parent.name == ROOT_BASE_NAME:
        shutil.rmtree(server_dir, ignore_errors=True)
        Path(f"{server_dir}.json").unlink(missing_ok=True)
    if socket_dir is not None:
        shutil.rmtree(socket_dir, ignore_errors=True)
    shutil.rmtree(path, ignore_errors=True)


def _socket_dir_named(info: dict) -> Path | None:
    """The socket folder a marker names, only if it is one dbops makes under /tmp."""
    value = info.get("socket_dir")
    if not isinstance(value, str):
        return None
    path = Path(value)
    if path.parent != SOCKET_PARENT or not path.name.startswith(SOCKET_PREFIX) or path.is_symlink():
        return None
    return path


def _stop_server(data_dir: Path) -> None:
    """Stop the server whose data folder this is, by its postmaster.pid: fast, then by force.

    The pid file is written by the server's user, so the pid is signalled only when that process
    really is the server of this folder (its working directory is the data folder)."""
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    if not _is_server_of(pid, data_dir):
        return
    try:
        os.kill(pid, signal.SIGQUIT)  # immediate: the folder is deleted next, nothing to flush
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _running(pid):
        time.sleep(0.02)
    if _running(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _is_server_of(pid: int, data_dir: Path) -> bool:
    import psutil

    try:
        return Path(psutil.Process(pid).cwd()).resolve() == data_dir.resolve()
    except (psutil.Error, OSError):
        return False


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
    try:
        started = _process_start(int(info.get("pid", 0)))
    except (TypeError, ValueError):
        return False
    return started is not None and started == info.get("pid_started")


def _read_own_marker(marker: Path) -> dict | None:
    """The marker's content, if it is a regular file of ours in a real folder of ours (not a symlink
    someone else put in a shared temp folder)."""
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    try:
        folder_st, marker_st = os.lstat(marker.parent), os.lstat(marker)
        if not stat.S_ISDIR(folder_st.st_mode) or not stat.S_ISREG(marker_st.st_mode):
            return None
        if uid is not None and (folder_st.st_uid != uid or marker_st.st_uid != uid):
            return None
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _external_server_dir(info: dict) -> Path | None:
    """The server folder a marker names, only if it is one dbops makes under the root base."""
    value = info.get("server_dir")
    if not isinstance(value, str):
        return None
    path = Path(value)
    if path.parent.name != ROOT_BASE_NAME or not path.name.startswith("dbops-") or path.is_symlink():
        return None
    return path


def find_leftover_instances(parent: Path | None = None, purpose: str | None = None) -> list[Path]:
    """Instance (and work) folders whose creating process is gone; as root, also server folders under
    the root base whose instance folder is gone."""
    parent = Path(parent or tempfile.gettempdir())
    found = []
    for marker in sorted(parent.glob(f"dbops-*/{MARKER_FILE}")):
        info = _read_own_marker(marker)
        if info is None or (purpose and info.get("purpose") != purpose):
            continue
        if not _owner_alive(info):
            found.append(marker.parent)
    for server_dir, info in _orphan_server_dirs(purpose):
        if server_dir not in found:
            found.append(server_dir)
    return found


def _orphan_server_dirs(purpose: str | None) -> list[tuple[Path, dict]]:
    if not _running_as_root():
        return []
    orphans = []
    for candidate in dict.fromkeys([tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"]):
        base = Path(candidate) / ROOT_BASE_NAME
        try:
            _check_root_owned_dir(base)
        except (OSError, InstanceError):
            continue
        for marker in sorted(base.glob("dbops-*.json")):
            info = _read_own_marker(marker)
            if info is None or (purpose and info.get("purpose") != purpose) or _owner_alive(info):
                continue
            instance_dir = info.get("instance_dir")
            if isinstance(instance_dir, str) and Path(instance_dir, MARKER_FILE).exists():
                continue  # removed through its instance folder
            orphans.append((base / marker.name[: -len(".json")], info))
    return orphans


def remove_leftover_instances(parent: Path | None = None, purpose: str | None = None) -> list[Path]:
    removed = []
    for path in find_leftover_instances(parent, purpose):
        if path.parent.name == ROOT_BASE_NAME:
            _remove_instance(path, path)
        else:
            info = _read_own_marker(path / MARKER_FILE) or {}
            _remove_instance(path, _external_server_dir(info))
        removed.append(path)
    return removed
