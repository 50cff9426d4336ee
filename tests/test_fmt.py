"""The one style of durations, ages, sizes, timestamps and counts (handlers/fmt.py)."""
from datetime import datetime, timedelta, timezone

import pytest

from handlers import fmt


@pytest.mark.parametrize("seconds, text", [
    (None, "-"), (0, "0 s"), (0.04, "less than 0.1 s"), (1.25, "1.2 s"), (9.94, "9.9 s"), (45.4, "45 s"),
    (60, "1 min"), (125, "2 min 5 s"), (3599, "59 min 59 s"), (3600, "1 h"), (3 * 3600 + 12 * 60, "3 h 12 min"),
    (86400, "24 h"), (47 * 3600 + 59 * 60, "47 h 59 min"), (48 * 3600, "2 d"), (200_000, "2 d 7 h"),
    (-5, "0 s"),
])
def test_duration_has_one_style_two_units_at_most(seconds, text):
    assert fmt.duration(seconds) == text


def test_age_counts_back_from_now_and_a_future_moment_is_now():
    now = datetime(2026, 11, 29, 3, 0, tzinfo=timezone.utc)
    assert fmt.age(now - timedelta(days=2, hours=7), now) == "2 d 7 h ago"
    assert fmt.age(now + timedelta(minutes=1), now) == "0 s ago"
    assert fmt.age(now.timestamp() - 90, now) == "1 min 30 s ago"


def test_when_is_utc_to_the_minute_for_datetimes_and_unix_times():
    berlin = timezone(timedelta(hours=1))
    moment = datetime(2026, 11, 29, 4, 0, 59, tzinfo=berlin)
    assert fmt.when(moment) == "2026-11-29 03:00 UTC"
    assert fmt.when(moment.timestamp()) == "2026-11-29 03:00 UTC"
    assert fmt.when(None) == "-"


@pytest.mark.parametrize("n, text", [(None, "-"), (812, "812 B"), (8192, "8.0 kB"), (int(1.5 * 1024 ** 3), "1.5 GB")])
def test_size_counts_in_1024s(n, text):
    assert fmt.size(n) == text


def test_plural_never_writes_s_in_brackets():
    assert fmt.plural(1, "backup") == "1 backup"
    assert fmt.plural(2, "backup") == "2 backups"
    assert fmt.plural(0, "backup") == "0 backups"
    assert fmt.plural(1, "index", "indexes") == "1 index"
    assert fmt.plural(1200, "row") == "1,200 rows"


def test_sparkline_spans_the_smallest_to_the_largest_value_oldest_first():
    assert fmt.sparkline([60, 80, 100, 120]) == "▁▃▆█"
    assert fmt.sparkline([1, 8]) == "▁█"
    assert fmt.sparkline([8, 1]) == "█▁"
    assert fmt.sparkline(list(range(8))) == fmt.SPARKS


def test_sparkline_of_a_flat_series_or_one_value_sits_in_the_middle():
    assert fmt.sparkline([5, 5, 5]) == "▄▄▄"
    assert fmt.sparkline([0.0, 0.0]) == "▄▄"
    assert fmt.sparkline([42]) == "▄"
    assert fmt.sparkline([]) == ""


def test_sparkline_leaves_a_gap_for_an_unknown_value():
    assert fmt.sparkline([1, None, 8]) == "▁ █"
    assert fmt.sparkline([None, None]) == "  "


def test_trend_names_its_range_once_when_flat():
    assert fmt.trend([60, 125], fmt.duration) == "▁█ (1 min to 2 min 5 s)"
    assert fmt.trend([2048, 2048], fmt.size) == "▄▄ (2.0 kB)"
    assert fmt.trend([None], fmt.size) == ""
