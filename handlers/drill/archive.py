"""What an archive's table of contents says, and the major version in a version text.

Getting the archive to disk (download, SHA-256, decryption, unpacking) is the backup area's
(handlers.backup.verify), shared by verify, restore and drills."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..pginstance import pg_tool
from ..pgtools import run_streaming


@dataclass
class ArchiveContents:
    """What `pg_restore --list` says about an archive."""

    format: str = ""  # CUSTOM, DIRECTORY, TAR
    entries: int = 0
    table_data: int = 0  # TABLE DATA entries: one "processing data" line each during the restore
    dumped_from: str = ""  # server version
    dumped_by: str = ""  # pg_dump version
    compression: str = ""
    errors: list[str] = field(default_factory=list)


_HEADER = {
    "Format": "format",
    "Dumped from database version": "dumped_from",
    "Dumped by pg_dump version": "dumped_by",
    "Compression": "compression",
}


def list_contents(archive: Path, env: dict[str, str]) -> ArchiveContents:
    """Read the table of contents; a truncated or foreign file shows up here first."""
    done = run_streaming([pg_tool("pg_restore"), "--list", str(archive)], env=env)
    contents = ArchiveContents()
    for line in done.lines:
        if line.startswith(";"):
            key, _, value = line.lstrip("; ").partition(":")
            attr = _HEADER.get(key.strip())
            if attr:
                setattr(contents, attr, value.strip())
        elif re.match(r"^\d+;", line):
            contents.entries += 1
            if " TABLE DATA " in line:
                contents.table_data += 1
        elif "pg_restore:" in line:
            contents.errors.append(line)
    if done.returncode != 0 and not contents.errors:
        contents.errors.append(f"pg_restore --list exited with {done.returncode}")
    return contents


def major_version(text: str | int | None) -> int | None:
    """18 from "18.1", "18.1 (Debian ...)", "pg_dump (PostgreSQL) 18.1", 180001 or "9.6.24" (-> 9)."""
    if text is None or text == "":
        return None
    if isinstance(text, int):
        return text // 10000 if text >= 100000 else text
    match = re.search(r"(\d+)(?:\.(\d+))?", str(text))
    if not match:
        return None
    return int(match.group(1))
