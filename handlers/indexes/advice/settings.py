"""Settings of `indexes suggest`: the `[indexes.advice]` table of dbops.toml.

The copy itself is made as the rehearsal's is (`[migrate.rehearsal]` work_dir and jobs): the same
sandbox, the same folder for throwaway servers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ... import config_values as cv

ADVICE = (
    cv.whole("statements", 20, "statements read from pg_stat_statements: this many by total time, "
                               "and as many by mean time", low=1, high=200),
    cv.number("min_gain", 0.5, "keep an index only when it cuts a statement's plan cost by this share", low=0,
              above=True, high=1),
    cv.whole("min_rows", 1000, "tables with fewer rows get no suggestion (a sequential scan is cheap)"),
    cv.whole("samples", 5, "real values sampled from the copy per statement, each run with EXPLAIN ANALYZE",
             low=1, high=50),
    cv.number("statement_timeout_s", 10.0, "per statement run on the copy", low=0, above=True),
    cv.whole("max_candidates", 30, "indexes built on the copy at most, most promising first", low=1, high=500),
)


@dataclass(frozen=True)
class AdviceSettings:
    statements: int = 20  # by total time, and as many by mean time (the review's slow list)
    # Dexter's rule: an index is worth it when it halves the planner's cost of a statement that matters.
    min_gain: float = 0.5
    min_rows: int = 1000  # PgHero stops at 500 rows; a few pages more are still read in a blink
    samples: int = 5  # real value sets per statement: the median of five is steady on a busy machine
    statement_timeout_s: float = 10.0
    max_candidates: int = 30  # each one is a real index build on the copy

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "AdviceSettings":
        return cls(**cv.read("indexes.advice", ADVICE, d))
