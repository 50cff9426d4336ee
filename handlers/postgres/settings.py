"""The `[postgres]` section of dbops.toml: the PostgreSQL majors the bot keeps for its copies."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import config_values as cv
from .binaries import SUPPORTED_MAJORS


def _majors(raw: Any) -> tuple[int, ...]:
    if not isinstance(raw, list) or not all(isinstance(m, int) and not isinstance(m, bool) for m in raw):
        raise ValueError("")
    unsupported = [m for m in raw if m not in SUPPORTED_MAJORS]
    if unsupported:
        raise ValueError(f"PostgreSQL {unsupported[0]} is not supported (dbops runs copies on "
                         f"{SUPPORTED_MAJORS[0]} to {SUPPORTED_MAJORS[-1]})")
    return tuple(sorted(set(raw)))


POSTGRES = (
    cv.custom("majors", [], _majors,
              f"a list of majors from {SUPPORTED_MAJORS[0]} to {SUPPORTED_MAJORS[-1]}, e.g. [16]",
              "majors `dbops pg install` (no major given: the Render build step) installs besides those the "
              "reachable targets run", example=[16]),
)


@dataclass(frozen=True)
class PostgresSettings:
    majors: tuple[int, ...] = field(default_factory=tuple)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "PostgresSettings":
        return cls(**cv.read("postgres", POSTGRES, d))
