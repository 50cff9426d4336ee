"""The one way dbops writes durations, ages, sizes, timestamps and counts, in Slack and in a terminal alike.

Durations are short and have two units at most, the second dropped when it is zero: "1.3 s", "45 s",
"2 min 5 s", "3 h 12 min", "2 d 7 h". Hours run up to 48 so that "30 h" reads as one figure rather than
"1 d 6 h". Timestamps are UTC, "2026-11-29 03:00 UTC". Sizes count in 1024s: "812 B", "8.0 kB", "1.5 GB".
Trends are sparklines, oldest first: "▁▃▆█".
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone

_MINUTE = 60
_HOUR = 3600
_DAY = 86400


def duration(seconds: float | None) -> str:
    """A length of time: "1.3 s", "2 min 5 s", "3 h 12 min", "2 d 7 h"; "-" when unknown."""
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds == 0:
        return "0 s"
    if seconds < 0.1:
        return "less than 0.1 s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < _MINUTE:
        return f"{whole} s"
    if whole < _HOUR:
        return _two(*divmod(whole, _MINUTE), "min", "s")
    minutes = whole // _MINUTE
    if whole < 48 * _HOUR:
        return _two(*divmod(minutes, 60), "h", "min")
    return _two(*divmod(minutes // 60, 24), "d", "h")


def _two(big: int, small: int, big_unit: str, small_unit: str) -> str:
    return f"{big} {big_unit} {small} {small_unit}" if small else f"{big} {big_unit}"


def age(then: datetime | float | None, now: datetime | float) -> str:
    """How long ago `then` was, from `now`: "3 h 12 min ago"; a `then` after `now` counts as just now."""
    if then is None:
        return "-"
    return f"{duration(_epoch(now) - _epoch(then))} ago"


def size(n: int | float | None) -> str:
    """A number of bytes: "812 B", "8.0 kB", "1.5 GB"; "-" when unknown."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"  # pragma: no cover - the loop returns at TB


def when(moment: datetime | float | None) -> str:
    """A moment in UTC, to the minute: "2026-11-29 03:00 UTC"; a float is a Unix time; "-" when unknown."""
    if moment is None:
        return "-"
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(float(moment), timezone.utc)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def when_written(text: object) -> str:
    """`when` of a moment kept as ISO 8601 text (a manifest's created_at); "?" when there is none,
    and the text as it is when it is not one (a record written by hand or by an older version)."""
    if not text:
        return "?"
    try:
        return when(datetime.fromisoformat(str(text)))
    except ValueError:
        return str(text)


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """"1 backup", "2 backups", "0 backups"; `plural_form` for words that do not take an s ("1 index", "2 indexes")."""
    word = singular if count == 1 else (plural_form or f"{singular}s")
    return f"{count:,} {word}"


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None]) -> str:
    """A trend in one short word, oldest first: ▁ the smallest value, █ the largest, a space where a
    value is unknown. A flat series (or a single value) sits in the middle, "▄▄▄": nothing moved, which
    a row of ▁ would misread as "low"."""
    known = [float(v) for v in values if v is not None]
    if not known:
        return " " * len(values) if values else ""
    low, high = min(known), max(known)
    steps = len(SPARKS) - 1

    def bar(v: float | None) -> str:
        if v is None:
            return " "
        if high - low < 1e-9 * max(1.0, abs(high)):
            return SPARKS[steps // 2]
        return SPARKS[round((float(v) - low) / (high - low) * steps)]
    return "".join(bar(v) for v in values)


def trend(values: Sequence[float | None], show: Callable[[float], str]) -> str:
    """A sparkline with its range in words: "▁▃▆█ (1 min to 2 min)"; `show` formats one value
    (fmt.size, fmt.duration). Empty when nothing is known."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = show(min(known)), show(max(known))
    return f"{sparkline(values)} ({low})" if low == high else f"{sparkline(values)} ({low} to {high})"


def _epoch(moment: datetime | float) -> float:
    return moment.timestamp() if isinstance(moment, datetime) else float(moment)
