"""Where a drill restores: a throwaway local PostgreSQL, a database on a scratch server, or (later) Render.

Every kind marks what it creates so a later process can remove what a crashed one left:
- local: the instance marker file (purpose "drill") in the instance folder;
- scratch: the database name starts with `dbops_drill_` and its COMMENT holds the owner's
  host, pid and pid start time as JSON.

New kinds (the Render issue) register a factory with `register_instance_kind("render", factory)`:
the factory takes the DrillSettings and the PostgreSQL major to run (None: the default binaries'),
and returns an object with the `DrillInstance` methods; `register_leftover_cleaner` adds its
start-up cleanup. A kind that cannot choose its major (a scratch server runs its own) starts
anyway: the drill compares the major it got with the one it asked for.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import time
from typing import Callable, Protocol

import psutil
import psycopg
from psycopg import sql

from .. import postgres
from ..errors import ConfigError
from ..target import connection_reason, describe_dsn
from .settings import DrillSettings

DRILL_PURPOSE = "drill"
SCRATCH_PREFIX = "dbops_drill_"
RESTORE_DB = "drill"


class DrillInstance(Protocol):
    kind: str

    def start(self) -> None: ...

    def database_dsn(self) -> str: ...  # the empty database the archive is restored into (a secret)

    def describe(self) -> str: ...  # secret-free, for the report

    def remove(self) -> None: ...  # idempotent; must work after a failed start


class LocalDrillInstance:
    """A private PostgreSQL of the chosen major in a temporary folder under `work_dir`, on a Unix socket only."""

    kind = "local"

    def __init__(self, settings: DrillSettings, major: int | None = None) -> None:
        # Restore-friendly memory: index builds and FK checks are most of a restore.
        self._instance = postgres.TemporaryInstance(
            purpose=DRILL_PURPOSE, parent=settings.work_dir, major=major,
            settings={"maintenance_work_mem": "256MB", "max_parallel_maintenance_workers": "2",
                      "autovacuum": "off", "wal_level": "minimal", "max_wal_senders": "0"})
        self.path = None

    def start(self) -> None:
        self._instance.start()
        self.path = self._instance.path
        with psycopg.connect(self._instance.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(RESTORE_DB)))

    def database_dsn(self) -> str:
        return self._instance.dsn(RESTORE_DB)

    def describe(self) -> str:
        return f"throwaway local PostgreSQL in {self.path}" if self.path else "throwaway local PostgreSQL"

    def remove(self) -> None:
        self._instance.stop()


def _owner_marker() -> dict:
    pid = os.getpid()
    return {"dbops": "drill", "host": socket.gethostname(), "pid": pid,
            "pid_started": psutil.Process(pid).create_time(), "created": time.time()}


class ScratchDrillInstance:
    """A uniquely named database on the scratch server at $DBOPS_DRILL_URL, dropped afterwards."""

    kind = "scratch"

    def __init__(self, settings: DrillSettings, major: int | None = None) -> None:
        url = settings.scratch_url
        if not url:
            raise ConfigError(f"drill.instance is \"scratch\" but {settings.scratch_url_env} is not set: put the "
                              "admin URL of a scratch PostgreSQL server there (a role that may CREATE DATABASE)")
        self._admin_dsn = url
        self.name = f"{SCRATCH_PREFIX}{time.strftime('%Y%m%d%H%M%S', time.gmtime())}_{secrets.token_hex(3)}"
        self._created = False

    def start(self) -> None:
        try:
            with psycopg.connect(self._admin_dsn, autocommit=True, connect_timeout=10) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
                self._created = True
                conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    sql.Identifier(self.name), sql.Literal(json.dumps(_owner_marker()))))
        except psycopg.Error as exc:
            raise ConfigError(f"cannot create the drill database on the scratch server "
                              f"{describe_dsn(self._admin_dsn)}: {connection_reason(exc, self._admin_dsn)}") from None

    def database_dsn(self) -> str:
        return psycopg.conninfo.make_conninfo(self._admin_dsn, dbname=self.name)

    def describe(self) -> str:
        host = describe_dsn(self._admin_dsn).rsplit("/", 1)[0]
        return f"database {self.name} on scratch server {host}"

    def remove(self) -> None:
        if not self._created:
            return
        with psycopg.connect(self._admin_dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))
        self._created = False


InstanceFactory = Callable[[DrillSettings, "int | None"], DrillInstance]
_FACTORIES: dict[str, InstanceFactory] = {"local": LocalDrillInstance, "scratch": ScratchDrillInstance}
_CLEANERS: dict[str, Callable[[DrillSettings], list[str]]] = {}


def register_instance_kind(kind: str, factory: InstanceFactory) -> None:
    """The extension point for other places to restore into (e.g. a Render Postgres created for the drill)."""
    _FACTORIES[kind] = factory


def register_leftover_cleaner(kind: str, cleaner: Callable[[DrillSettings], list[str]]) -> None:
    _CLEANERS[kind] = cleaner


def make_instance(settings: DrillSettings, major: int | None = None) -> DrillInstance:
    factory = _FACTORIES.get(settings.instance)
    if factory is None:
        raise ConfigError(f"drill.instance \"{settings.instance}\" is not available in this dbops "
                          f"(available: {', '.join(sorted(_FACTORIES))})")
    return factory(settings, major)


# -- start-up cleanup ----------------------------------------------------------

def cleanup_leftovers(settings: DrillSettings) -> list[str]:
    """Remove what crashed or killed drills left behind; one line per thing removed (for the channel)."""
    said = [f"removed a leftover drill instance ({path.name}) from {path.parent}"
            for path in postgres.remove_leftover_instances(settings.work_dir, purpose=DRILL_PURPOSE)]
    if settings.scratch_url:
        said += _drop_leftover_scratch_databases(settings.scratch_url, settings.stale_scratch_hours)
    for cleaner in _CLEANERS.values():
        said += cleaner(settings)
    return said


def _drop_leftover_scratch_databases(admin_dsn: str, stale_hours: int) -> list[str]:
    server = describe_dsn(admin_dsn).rsplit("/", 1)[0]
    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
            rows = conn.execute(
                "SELECT d.datname, shobj_description(d.oid, 'pg_database') FROM pg_database d "
                "WHERE starts_with(d.datname, %s)", (SCRATCH_PREFIX,)).fetchall()
            said = []
            for name, comment in rows:
                if _scratch_owner_alive(comment, stale_hours):
                    continue
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                said.append(f"dropped a leftover drill database ({name}) on the scratch server {server}")
            return said
    except psycopg.Error as exc:
        return [f"could not look for leftover drill databases on the scratch server {server}: "
                f"{connection_reason(exc, admin_dsn)}"]


def _scratch_owner_alive(comment: str | None, stale_hours: int) -> bool:
    """A drill database is still in use when its owner process runs (same machine) or, for another
    machine's (another replica's), when it is younger than `stale_hours`."""
    try:
        info = json.loads(comment or "")
    except ValueError:
        return False  # carries the name prefix but no readable marker: a drill that died mid-creation
    if not isinstance(info, dict):
        return False
    if info.get("host") == socket.gethostname():
        try:
            return psutil.Process(int(info.get("pid", 0))).create_time() == info.get("pid_started")
        except (psutil.Error, ValueError):
            return False
    return time.time() - float(info.get("created", 0)) < stale_hours * 3600
