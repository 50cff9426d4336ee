"""Settings of dbops.toml declared as data: one `Setting` per key, one reader for a whole section.

Each area's settings module lists its keys once (key, kind, default, what is allowed, help); the
reader checks a section against that list and the documentation (the commented
dbops.example.toml and the README's table) is written from the same list, so the three cannot
drift apart. A value of the wrong kind is a `SettingError` naming `section.key` and what is
allowed. TOML gives true/false as bool, which Python counts as an int: a bool is never taken for
a number.
"""
from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass, field
from datetime import time
from typing import Any, Callable, Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError

KINDS = ("whole", "number", "flag", "text", "choice", "names", "custom", "table", "entries")


class SettingError(ConfigError):
    """A value that is not allowed: `key` is its full path (`backup.retention.daily`), `value` what
    was written, or None when the value must not be repeated (an unknown key may hold a pasted URL)."""

    def __init__(self, message: str, key: str, value: Any = None) -> None:
        super().__init__(message)
        self.key = key
        self.value = value


@dataclass(frozen=True)
class Setting:
    key: str
    kind: str
    default: Any  # as written in dbops.toml; None: absent means the settings class's own default
    help: str
    low: float | None = None
    high: float | None = None
    above: bool = False  # low itself is not allowed (a timeout of 0 is no timeout)
    choices: tuple[str, ...] = ()
    allowed: str = ""  # for custom: what may be written, as the error message and the README say it
    parse: Callable[[Any], Any] | None = None  # custom: raw -> value, raises ValueError; entries: list -> value
    attr: str | None = None  # the settings class's attribute, when it is not named like the key
    fields: tuple["Setting", ...] = ()  # a sub-table's keys, or each entry's keys
    required: bool = False  # entries only: the key must be there
    example: Any = None  # what dbops.example.toml shows instead of the default
    commented: bool = False  # dbops.example.toml shows it as a comment (an example, not a default)
    show_value: bool = True  # False: an error never repeats the value (a URL could be pasted there)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown setting kind {self.kind!r}")

    @property
    def name(self) -> str:
        return self.attr or self.key

    def allowed_text(self) -> str:
        """What may be written here, in the words of the error message."""
        if self.allowed:
            return self.allowed
        if self.kind == "whole":
            return _range("a whole number", self.low, self.high, self.above)
        if self.kind == "number":
            return _range("a number", self.low, self.high, self.above)
        if self.kind == "flag":
            return "true or false"
        if self.kind == "text":
            return "text"
        if self.kind == "choice":
            return f"one of {', '.join(self.choices)}"
        if self.kind == "names":
            return "a list of names, e.g. [\"public\"]"
        if self.kind == "table":
            return f"a table: {', '.join(f.key for f in self.fields)}"
        if self.kind == "entries":
            return f"a list of tables ([[...]]) with {', '.join(f.key for f in self.fields)}"
        return "a valid value"


def _range(what: str, low: float | None, high: float | None, above: bool) -> str:
    if low is not None and high is not None and not above:
        return f"{what} from {low:g} to {high:g}"
    parts = ([f"{'>' if above else '>='} {low:g}"] if low is not None else []) + \
        ([f"<= {high:g}"] if high is not None else [])
    return f"{what} {' and '.join(parts)}".strip()


# -- declaring ------------------------------------------------------------------------------

def whole(key: str, default: int | None, help: str, low: int | None = 0, high: int | None = None, **kw) -> Setting:
    return Setting(key, "whole", default, help, low=low, high=high, **kw)


def number(key: str, default: float | None, help: str, low: float | None = 0, high: float | None = None,
           **kw) -> Setting:
    return Setting(key, "number", default, help, low=low, high=high, **kw)


def flag(key: str, default: bool | None, help: str, **kw) -> Setting:
    return Setting(key, "flag", default, help, **kw)


def text(key: str, default: str | None, help: str, **kw) -> Setting:
    return Setting(key, "text", default, help, **kw)


def nonempty(key: str, default: str | None, help: str, allowed: str = "non-empty text", **kw) -> Setting:
    """Text that must not be empty (a name, a path)."""
    return custom(key, default, _nonempty, allowed, help, **kw)


def env_name(key: str, default: str | None, help: str,
             allowed: str = "the name of an environment variable, e.g. STAGING_DATABASE_URL", **kw) -> Setting:
    """The name of the environment variable that holds a secret. The value is never repeated in an
    error: a connection string pasted here instead of a name must not be shown."""
    return custom(key, default, _env_name, allowed, help, show_value=False, **kw)


def _env_name(raw: Any) -> str:
    if not isinstance(raw, str) or not _ENV_NAME.fullmatch(raw):
        raise ValueError("")
    return raw


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _nonempty(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("")
    return raw


def time_of_day(raw: Any) -> time | None:
    """"HH:MM" (24-hour), or "off" for None."""
    if raw in ("off", False):
        return None
    match = _HHMM.fullmatch(raw.strip()) if isinstance(raw, str) else None
    if not match:
        raise ValueError("")
    return time(int(match.group(1)), int(match.group(2)))


def time_zone(raw: Any) -> str:
    """An IANA time zone name, checked against the zone database."""
    try:
        ZoneInfo(str(raw))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("") from None
    return str(raw)


TIME_OF_DAY = "a time of day like \"03:00\" (24-hour), or \"off\""
TIME_ZONE = "a time zone name like \"UTC\" or \"Europe/Berlin\""
_HHMM = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


def choice(key: str, default: str | None, choices: Sequence[str], help: str, **kw) -> Setting:
    return Setting(key, "choice", default, help, choices=tuple(choices), **kw)


def names(key: str, default: list[str] | None, help: str, **kw) -> Setting:
    return Setting(key, "names", default, help, **kw)


def custom(key: str, default: Any, parse: Callable[[Any], Any], allowed: str, help: str, **kw) -> Setting:
    """A value only `parse` can judge (a schedule, a time zone): it raises ValueError, with a message
    when it can say more than `allowed`."""
    return Setting(key, "custom", default, help, parse=parse, allowed=allowed, **kw)


def table(key: str, fields: Sequence[Setting], help: str, parse: Callable[[dict], Any], **kw) -> Setting:
    """A sub-table such as [backup.retention]; `parse` builds its value from the checked keys."""
    return Setting(key, "table", None, help, fields=tuple(fields), parse=parse, **kw)


def entries(key: str, fields: Sequence[Setting], help: str, parse: Callable[[list[dict], str], Any],
            example: list[dict], **kw) -> Setting:
    """An array of tables such as [[indexes.expected]]; each entry's keys are checked against
    `fields`, then `parse(entries, where)` builds the value (and checks what spans entries)."""
    return Setting(key, "entries", [], help, fields=tuple(fields), parse=parse, example=example, **kw)


# -- reading -----------------------------------------------------------------------------------

def no_unknown(d: Mapping, section: str, known: Iterable[str]) -> None:
    """Every key of `d` is one of `known`: a misspelt setting is an error, not silently a default."""
    known = sorted(known)
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise SettingError(f"{section}.{unknown[0]} is not a setting; known: {', '.join(known)}",
                           f"{section}.{unknown[0]}")


def read(section: str, settings: Sequence[Setting], d: Mapping[str, Any] | None) -> dict[str, Any]:
    """The section's values by attribute name: every key present, checked, plus every declared
    default; a key that is absent and has no default is left out (the class's default applies)."""
    if d is not None and not isinstance(d, Mapping):
        raise SettingError(f"[{section}] must be a table of settings", section)
    d = dict(d or {})
    no_unknown(d, section, [s.key for s in settings])
    found: dict[str, Any] = {}
    for s in settings:
        if s.key in d:
            found[s.name] = value_of(section, s, d[s.key])
        elif s.required:
            raise SettingError(f"{section}.{s.key} is required: {s.allowed_text()}", f"{section}.{s.key}")
        elif s.kind == "table":
            found[s.name] = value_of(section, s, {})
        elif s.default is not None:
            found[s.name] = value_of(section, s, s.default)
    return found


def value_of(section: str, s: Setting, raw: Any) -> Any:
    """One key's value, or a SettingError saying what is allowed there."""
    where = f"{section}.{s.key}"

    def bad(detail: str = "") -> SettingError:
        # "must be a list ..." reads on from the key; "'funday' is not a day" follows a colon
        message = f"{where}{' ' if detail[:1].islower() else ': '}{detail}" if detail else \
            f"{where} must be {s.allowed_text()}"
        return SettingError(message, where, raw if s.show_value else None)

    if s.kind in ("whole", "number"):
        kinds = (int,) if s.kind == "whole" else (int, float)
        if isinstance(raw, bool) or not isinstance(raw, kinds) or not _in_range(s, raw):
            raise bad()
        return raw if s.kind == "whole" else float(raw)
    if s.kind == "flag":
        if not isinstance(raw, bool):
            raise bad()
        return raw
    if s.kind == "text":
        if not isinstance(raw, str) or (s.required and not raw.strip()):
            raise bad()
        return raw
    if s.kind == "choice":
        if raw not in s.choices:
            raise bad()
        return raw
    if s.kind == "names":
        if isinstance(raw, str) or not isinstance(raw, list) or \
                not all(isinstance(v, str) and v and "\x00" not in v for v in raw):
            raise bad()
        return list(raw)
    if s.kind == "table":
        if not isinstance(raw, dict):
            raise bad()
        return s.parse(read(where, s.fields, raw))
    if s.kind == "entries":
        if not isinstance(raw, list):
            raise bad()
        checked = []
        for n, item in enumerate(raw):
            if not isinstance(item, dict):
                raise SettingError(f"{where}[{n}] must be a table with {', '.join(f.key for f in s.fields)}",
                                   f"{where}[{n}]")
            checked.append(read(f"{where}[{n}]", s.fields, item))
        return s.parse(checked, where)
    try:
        return s.parse(raw)
    except ValueError as exc:
        raise bad(str(exc)) from None


def _in_range(s: Setting, value: float) -> bool:
    if s.low is not None and (value < s.low or (s.above and value == s.low)):
        return False
    return s.high is None or value <= s.high


# -- documenting -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Section:
    """One section as the documentation shows it: `name` is its table ("backup", "migrate.check");
    a name ending in `.NAME` is a family of tables (`targets.NAME`) shown through `examples`."""

    name: str
    title: str
    settings: Sequence[Setting] = ()
    note: str = ""  # comment lines above the table
    examples: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # targets.NAME: name -> values
    body: str = ""  # commented lines inside a free-form table ([identities])


COMMENT_COLUMN = 38
LINE_WIDTH = 110


def example_toml(sections: Sequence[Section], heading: str) -> str:
    """The commented example configuration: every section, every key, with its help."""
    lines = [f"# {line}" if line else "#" for line in heading.splitlines()]
    for sec in sections:
        lines += ["", f"# -- {sec.title} ".ljust(88, "-")]
        lines += [f"# {line}" for line in sec.note.splitlines()]
        if sec.name.endswith(".NAME"):
            family = sec.name.removesuffix(".NAME")
            for n, (example, values) in enumerate(sec.examples.items()):
                lines += ([""] if n else []) + [f"[{family}.{example}]"]
                lines += _keys(sec.settings, values)
            continue
        lines.append(f"[{sec.name}]")
        lines += sec.body.splitlines()
        lines += _keys([s for s in sec.settings if s.kind not in ("table", "entries")], {})
        for s in sec.settings:
            if s.kind == "table":
                lines += ["", _commented(f"[{sec.name}.{s.key}]", s.help)]
                lines += _keys(s.fields, s.example or {})
            elif s.kind == "entries":
                for item in s.example:
                    lines += ["", _commented(f"[[{sec.name}.{s.key}]]", s.help)]
                    lines += _keys([f for f in s.fields if f.key in item], item)
    return "\n".join(lines) + "\n"


def _keys(settings: Iterable[Setting], values: Mapping[str, Any]) -> list[str]:
    lines = []
    for s in settings:
        value = values.get(s.key, s.example if s.example is not None else s.default)
        if value is None:
            continue
        line = f"{s.key} = {toml_value(value)}"
        lines.append(_commented(f"# {line}" if s.commented and s.key not in values else line, s.help))
    return lines


def _commented(line: str, help: str) -> str:
    """`line` with its help as a comment from COMMENT_COLUMN on, wrapped to LINE_WIDTH."""
    if not help:
        return line
    if len(line) >= COMMENT_COLUMN - 1:  # a long value: its help goes above it
        return "\n".join([f"# {c}" for c in textwrap.wrap(help, LINE_WIDTH - 2)] + [line])
    chunks = textwrap.wrap(help, LINE_WIDTH - COMMENT_COLUMN - 2)
    return "\n".join([f"{line.ljust(COMMENT_COLUMN - 1)} # {chunks[0]}"]
                     + [f"{' ' * (COMMENT_COLUMN - 1)} # {c}" for c in chunks[1:]])


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if '"' in value and "'" not in value and "\n" not in value:
            return f"'{value}'"  # a literal string: SQL with quoted identifiers stays readable
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def markdown_table(sections: Sequence[Section]) -> str:
    """Every key as a README table row: key, default, what is allowed, meaning."""
    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for sec in sections:
        prefix = sec.name.replace(".NAME", ".<name>")
        for s in sec.settings:
            rows += _rows(prefix, s)
    return "\n".join(rows) + "\n"


def _rows(prefix: str, s: Setting) -> list[str]:
    key = f"{prefix}.{s.key}"
    if s.kind == "table":
        return [row for f in s.fields for row in _rows(key, f)]
    if s.kind == "entries":
        return [row for f in s.fields for row in _rows(f"{key}[]", f)]
    default = "" if s.default is None else f"`{toml_value(s.default)}`"
    return [f"| `{key}` | {default} | {_cell(s.allowed_text())} | {_cell(s.help)} |"]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
