"""pg_dump's version and abilities: which compression it can write, whether it can read the server."""
from __future__ import annotations

import functools
import os
import re
import subprocess

from .binaries import bin_dir, pg_tool
from .client import last_line, libpq_env
from .errors import PgBinariesError, PgToolError

_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def pg_dump_version() -> tuple[tuple[int, int], str]:
    """((major, minor), "pg_dump (PostgreSQL) 18.1") of the pg_dump that backups use."""
    try:
        result = subprocess.run([pg_tool("pg_dump"), "--version"], capture_output=True, text=True, timeout=30,
                                env=libpq_env(""))
    except (PgBinariesError, OSError, subprocess.SubprocessError) as exc:
        raise PgToolError(f"pg_dump cannot be run: {exc}") from None
    text = result.stdout.strip()
    match = _VERSION_RE.search(text)
    if result.returncode != 0 or not match:
        raise PgToolError(f"cannot tell the version of pg_dump ({pg_tool('pg_dump')}): "
                              f"{last_line(result.stderr) or text or 'no output'}")
    return (int(match.group(1)), int(match.group(2) or 0)), text


def require_pg_dump_for(server_version_num: int, server_version: str) -> tuple[int, str]:
    """Refuse a pg_dump older than the server: it cannot read the newer catalogs correctly.

    Returns (pg_dump major version, its version line)."""
    (major, minor), text = pg_dump_version()
    server_major = server_version_num // 10000
    if major < server_major:
        where = (f"DBOPS_PG_BIN={os.environ['DBOPS_PG_BIN']}" if os.environ.get("DBOPS_PG_BIN")
                 else str(bin_dir()))
        raise PgToolError(
            f"pg_dump {major}.{minor} (from {where}) is older than the server, PostgreSQL "
            f"{server_version.split()[0]}: pg_dump must be at least the server's major version ({server_major}). "
            f"Point DBOPS_PG_BIN at a PostgreSQL {server_major} or newer bin folder, or unset it to use the "
            "bundled PostgreSQL 18 tools.")
    return major, text


@functools.lru_cache(maxsize=16)
def pg_dump_supports(method: str, pg_dump_path: str) -> bool:
    """Whether this pg_dump build can compress with `method` (zstd and lz4 are optional at build time).

    pg_dump checks the compression specification before it connects, so a connection that cannot
    succeed (a socket folder that does not exist) is enough to ask it.
    """
    result = subprocess.run([pg_dump_path, "-Fc", "-Z", method, "-f", os.devnull, "-w",
                             "-d", "host=/nonexistent-dbops-probe dbname=probe connect_timeout=1"],
                            capture_output=True, text=True, env=libpq_env(""), timeout=30)
    return "does not support compression" not in result.stderr and "invalid compression" not in result.stderr


def choose_compression(setting: str, level: int | None, major: int) -> str:
    """The -Z value: zstd where this pg_dump has it (16+, built with zstd), gzip otherwise.

    Compression happens in pg_dump, on the bot's machine, so only pg_dump's support matters.
    """
    path = pg_tool("pg_dump")
    if setting == "none":
        return "none"
    if setting in ("zstd", "lz4"):
        if major < 16 or not pg_dump_supports(setting, path):
            raise PgToolError(f"backup.compression = \"{setting}\" but this pg_dump ({path}) was built without "
                                  f"{setting}; use \"auto\" or \"gzip\"")
        method = setting
    elif setting == "auto" and major >= 16 and pg_dump_supports("zstd", path):
        method = "zstd"
    else:
        method = "gzip"
    if level is not None:
        return f"{method}:{level}"
    return {"zstd": "zstd:3", "gzip": "gzip:6", "lz4": "lz4:1"}[method]

