"""Reading one value of a dbops.toml section, with the same checks and the same wording everywhere.

Each reader takes the section's table `d`, the section's name for the message ("backup", "drill"),
the key and the default; a value of the wrong kind is a ConfigError naming `section.key`. TOML gives
true/false as bool, which Python counts as an int: a bool is never taken for a number.
"""
from __future__ import annotations

from typing import Any, Iterable

from .errors import ConfigError


def no_unknown(d: dict, section: str, known: Iterable[str]) -> None:
    """Every key of `d` is one of `known`: a misspelt setting is an error, not silently a default."""
    known = sorted(known)
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ConfigError(f"{section}.{unknown[0]} is not a setting; known: {', '.join(known)}")


def whole(d: dict, section: str, key: str, default: int, minimum: int) -> int:
    """A whole number >= minimum."""
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{section}.{key} must be a whole number >= {minimum}")
    return value


def number(d: dict, section: str, key: str, default: float, minimum: float) -> float:
    """A number (whole or not) >= minimum."""
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigError(f"{section}.{key} must be a number >= {minimum:g}")
    return float(value)


def flag(d: dict, section: str, key: str, default: bool) -> bool:
    """true or false."""
    value: Any = d.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{section}.{key} must be true or false")
    return value
