"""Which PostgreSQL major a copy runs, and which client programs talk to a server: the one place that
decides, so drills, rehearsals, restores and index proofs choose alike, and say it alike.

A copy stands for a database, so it runs that database's major: a copy on another major proves
things about that major only. Client programs follow the server they talk to:
- pg_dump of the server's major, never older (an older pg_dump cannot read a newer catalog);
- pg_restore of the major of the server it restores into (a newer one sends settings an older
  server rejects, e.g. `SET transaction_timeout` from 17 on), and at least the major of the pg_dump
  that wrote the archive (an older pg_restore cannot read a newer archive format).
"""
from __future__ import annotations

from .archive import major_version
from .binaries import bin_dir, default_major, has_major, installed_majors, require_supported
from .errors import PgBinariesError, VersionError


def short_version(version: str | int | None) -> str:
    """"16.4" from "16.4 (Debian 16.4-1.pgdg120+1)", from 160004, or from "pg_dump (PostgreSQL) 16.4"."""
    if version is None or version == "":
        return "?"
    if isinstance(version, int) or str(version).isdigit():
        num = int(version)
        return f"{num // 10000}.{num % 10000}" if num >= 100000 else str(num)
    text = str(version)
    if "(PostgreSQL)" in text:
        text = text.split("(PostgreSQL)", 1)[1]
    return text.split()[0] if text.split() else "?"


def copy_major(source_major: int, archive_major: int | None = None, allow_newer: bool = False) -> int:
    """The major a copy of a PostgreSQL `source_major` database runs on: that one. An archive written
    by a newer pg_dump (`archive_major`) cannot be restored there. With `allow_newer`, when the
    source's major is not installed or cannot take the archive, the oldest installed newer one that
    can. Raises PgBinariesError (with the install command) or VersionError."""
    need = max(source_major, archive_major or 0)
    if not allow_newer:
        if need > source_major:
            raise VersionError(
                f"the archive was written by pg_dump {archive_major}, which PostgreSQL {source_major}'s pg_restore "
                f"cannot read: back up with PostgreSQL {source_major}'s pg_dump (`dbops pg install {source_major}`, "
                f"then a new backup), or run on PostgreSQL {archive_major} with --allow-newer-major (which proves "
                f"restorability on {archive_major}, not on {source_major})")
        bin_dir(source_major)  # raises: not installed (the install command), or not supported
        return source_major
    if need == source_major and has_major(source_major):
        return source_major
    for major in installed_majors():
        if major >= need:
            return major
    if default_major() >= need:
        return default_major()
    raise PgBinariesError(f"no PostgreSQL {need} or newer is installed here: run `dbops pg install {max(need, 14)}`")


def client_major(server_major: int) -> tuple[int | None, str | None]:
    """(the major of the client programs for a server of `server_major`, a note or None).

    That major when it is installed. Otherwise the default binaries when they are newer, with a
    note saying what that costs: the archive restores only into that newer major. None as the
    major means the default binaries. Raises PgBinariesError when nothing new enough is here."""
    try:
        require_supported(server_major)
        bin_dir(server_major)
        return server_major, None
    except PgBinariesError as exc:
        missing = str(exc)
    fallback = default_major()
    if fallback < server_major:
        raise PgBinariesError(f"{missing}; the default binaries are PostgreSQL {fallback}, older than the server")
    return None, (f"PostgreSQL {server_major}'s client programs are not here, so PostgreSQL {fallback}'s were used: "
                  f"{missing.split(': ', 1)[-1] if server_major >= 14 else missing}")


def restore_major(server_major: int, archive_major: int | None) -> int:
    """The major of the pg_restore that restores an archive (from pg_dump `archive_major`) into a server
    of `server_major`: the server's own. Raises VersionError when it cannot read the archive,
    PgBinariesError when it is not installed."""
    if archive_major is not None and archive_major > server_major:
        raise VersionError(f"PostgreSQL {server_major} cannot take an archive from pg_dump {archive_major}: restore "
                           f"into PostgreSQL {archive_major} or newer")
    bin_dir(server_major)
    return server_major


def majors_line(source: str, source_version: str | int | None, copy_version: str | int | None,
                copy_word: str = "copy on", newer: str | None = None) -> str:
    """"prod: PostgreSQL 16.4 · copy on 16.15", and what a newer major means when the copy runs one
    (`newer`; default: that it proves things on that major only)."""
    text = f"{source}: PostgreSQL {short_version(source_version)} · {copy_word} {short_version(copy_version)}"
    src, cpy = major_version(short_version(source_version)), major_version(short_version(copy_version))
    if src is not None and cpy is not None and cpy != src:
        text += (f" ({newer or f'a newer major: this proves it on PostgreSQL {cpy}, not on {src}'})" if cpy > src
                 else f" (an older major than {source}'s)")
    return text
