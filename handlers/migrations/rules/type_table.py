"""How risky is `ALTER COLUMN ... TYPE new` given the column's old type?

Used by the rules lossy-type-change, narrowing-type-change, table-rewrite and safe-type-change.
Every ALTER COLUMN TYPE takes an ACCESS EXCLUSIVE lock; what differs is how long it is held
(a table rewrite or a full scan, or just a catalog update) and whether values survive.

The classification table (old -> new: class, why). Pairs not listed are LOSSY: nothing here
proves them lossless. Any USING expression other than the bare column (or the column cast to
the new type) is LOSSY too: it computes new values.

  SAFE      no rewrite, lossless             -> info    safe-type-change
  REWRITE   lossless, rewrites the table     -> warning table-rewrite (ACCESS EXCLUSIVE for the rewrite)
  NARROWING lossless if every row fits,      -> narrowing-type-change: warning when a database
            fails the migration otherwise       shows 0 rows that don't fit, else forbidden
  LOSSY     values change or are lost        -> forbidden lossy-type-change
  UNKNOWN   old type unknown                 -> forbidden lossy-type-change (conservative)

  old                 new                  class      why
  varchar(n)          varchar(m>=n), text  SAFE       same storage, only the limit is checked
  varchar/text        varchar(m<n)         NARROWING  longer values make the ALTER fail
  char(n)             char(m>n)            REWRITE    values are re-padded
  char(n)             char(m<n)            NARROWING
  char(n)             varchar, text        REWRITE    trailing pad spaces (insignificant in char) go
  varchar/text        char(n)              LOSSY      char pads and drops trailing spaces
  smallint->integer->bigint (widening)     REWRITE    every value fits
  bigint->integer->smallint (narrowing)    NARROWING  out-of-range values fail
  integer types       numeric(p,s)         REWRITE if p-s holds every value, else NARROWING
  integer types       numeric(p,s<0)       LOSSY      a negative scale rounds to multiples of 10^-s
  numeric(p,s)        numeric(q>=p,s)      SAFE       precision up at the same scale: no rewrite
  numeric(p,s)        numeric(q<p,s)       NARROWING  too many integer digits fail
  numeric(p,s)        numeric(q,t>s)       REWRITE if q-t >= p-s, else NARROWING
  numeric(p,s)        numeric(q,t<s)       LOSSY      rounds to fewer decimal places
  numeric(p,s)        numeric              SAFE       unconstrained holds every value
  numeric             numeric(p,s)         LOSSY      may round
  numeric(p,s<=0)     integer types        REWRITE if p-s digits always fit, else NARROWING
  numeric, numeric(p,s>0) -> integer types LOSSY      rounds fractions
  real                double precision     REWRITE
  smallint            real, double         REWRITE    exact in the mantissa
  integer             double precision     REWRITE    exact in the mantissa
  anything else       real, double         LOSSY      binary floating point is inexact
  timestamp(p)        timestamp(q>=p)      SAFE       (also timestamptz, time, timetz; default p=6)
  timestamp(p)        timestamp(q<p)       LOSSY      rounds fractional seconds
  timestamp           timestamptz          REWRITE    read as local time in the session TimeZone
  timestamptz         timestamp            LOSSY      the repeated DST hour maps two instants to one
  interval(p)         interval(q>=p)       SAFE       (or fewer restricted fields; default p=6)
  interval(p)         interval(q<p)        LOSSY      rounds fractional seconds
  interval            interval YEAR, ...   LOSSY      a new fields restriction truncates values
  date                timestamp(tz)        REWRITE
  timestamp(tz)       date                 LOSSY      drops the time of day
  cidr                inet                 SAFE       every cidr is an inet, same storage
  inet                cidr                 LOSSY      zeroes host bits: 10.1.2.3/24 -> 10.1.2.0/24
  json                jsonb                LOSSY      drops duplicate keys, key order, whitespace
  jsonb               json                 REWRITE
  anything            text, varchar        REWRITE    every value has a text form
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

from ..nodes import Node, is_column_ref
from ..sqltypes import INTERVAL_ALL_FIELDS, INTERVAL_FULL_PRECISION, SqlType, type_from_ast


class Change(enum.Enum):
    SAME = "same"
    SAFE = "safe"
    REWRITE = "rewrite"
    NARROWING = "narrowing"
    LOSSY = "lossy"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Misfit:
    """Which existing values would not fit; facts.py turns it into a count query.
    kind "longer_than": char_length(col) > limit; "outside_range": col outside (low, high);
    "digits_over": abs(col) >= 10^limit (more integer digits than the new type keeps)."""

    kind: str
    limit: int
    high: int = 0


@dataclass(frozen=True)
class Classification:
    change: Change
    reason: str
    misfit: Misfit | None = None


INT_RANGES = {"int2": (-(2**15), 2**15 - 1), "int4": (-(2**31), 2**31 - 1), "int8": (-(2**63), 2**63 - 1)}
INT_DIGITS = {"int2": 5, "int4": 10, "int8": 19}  # digits the largest value has
INT_SAFE_DIGITS = {"int2": 4, "int4": 9, "int8": 18}  # every number with this many digits fits
INTEGERS = tuple(INT_RANGES)
TIME_TYPES = ("timestamp", "timestamptz", "time", "timetz")

Classifier = Callable[[SqlType, SqlType], Classification]


def _fixed(change: Change, reason: str) -> Classifier:
    return lambda old, new: Classification(change, reason)


def _text_limit(old: SqlType, new: SqlType) -> Classification:
    old_len = old.mods[0] if old.mods else None  # None: no limit
    new_len = new.mods[0] if new.mods else None
    if new_len is None or (old_len is not None and new_len >= old_len):
        return Classification(Change.SAFE, "the limit grows; no rewrite, only the catalog changes")
    return Classification(Change.NARROWING, f"values longer than {new_len} characters make it fail",
                          Misfit("longer_than", new_len))


def _char_length(old: SqlType, new: SqlType) -> Classification:
    old_len, new_len = (old.mods or (1,))[0], (new.mods or (1,))[0]
    if new_len >= old_len:
        return Classification(Change.REWRITE, "every value is re-padded to the new length")
    return Classification(Change.NARROWING, f"values longer than {new_len} characters make it fail",
                          Misfit("longer_than", new_len))


def _int_to_int(old: SqlType, new: SqlType) -> Classification:
    if INTEGERS.index(new.name) > INTEGERS.index(old.name):
        return Classification(Change.REWRITE, f"every {old} fits a {new}")
    low, high = INT_RANGES[new.name]
    return Classification(Change.NARROWING, f"values outside {low}..{high} make it fail",
                          Misfit("outside_range", low, high))


def _int_to_numeric(old: SqlType, new: SqlType) -> Classification:
    if new.mods and new.mods[1] < 0:
        return Classification(Change.LOSSY, f"a negative scale rounds integers to multiples of {10 ** -new.mods[1]}")
    if not new.mods or new.mods[0] - new.mods[1] >= INT_DIGITS[old.name]:
        return Classification(Change.REWRITE, f"every {old} fits a {new}")
    digits = new.mods[0] - new.mods[1]
    return Classification(Change.NARROWING, f"values with more than {digits} integer digits make it fail",
                          Misfit("digits_over", digits))


def _numeric_to_int(old: SqlType, new: SqlType) -> Classification:
    if not old.mods or old.mods[1] > 0:
        return Classification(Change.LOSSY, f"{new} rounds away the fractional part")
    # numeric(p,s) with s <= 0 holds integers of up to p - s digits (numeric(4,-3): up to 9999000)
    if old.mods[0] - old.mods[1] <= INT_SAFE_DIGITS[new.name]:
        return Classification(Change.REWRITE, f"every {old} fits a {new}")
    low, high = INT_RANGES[new.name]
    return Classification(Change.NARROWING, f"values outside {low}..{high} make it fail",
                          Misfit("outside_range", low, high))


def _numeric(old: SqlType, new: SqlType) -> Classification:
    if not new.mods:
        return Classification(Change.SAFE, "unconstrained numeric holds every value; no rewrite")
    if not old.mods:
        return Classification(Change.LOSSY,
                              f"unconstrained numeric values may be rounded to {new.mods[1]} decimal places")
    (p, s), (q, t) = old.mods, new.mods
    if t < s:
        return Classification(Change.LOSSY, f"values are rounded from {s} to {t} decimal places")
    if q - t >= p - s:
        if t == s:
            return Classification(Change.SAFE, "precision grows at the same scale; no rewrite")
        return Classification(Change.REWRITE, "more decimal places: every value is rewritten")
    return Classification(Change.NARROWING, f"values with more than {q - t} integer digits make it fail",
                          Misfit("digits_over", q - t))


def _time_precision(old: SqlType, new: SqlType) -> Classification | None:
    old_p, new_p = (old.mods or (6,))[0], (new.mods or (6,))[0]
    if new_p < old_p:
        return Classification(Change.LOSSY, f"fractional seconds are rounded from {old_p} to {new_p} digits")
    return None


def _same_time_type(old: SqlType, new: SqlType) -> Classification:
    return _time_precision(old, new) or Classification(Change.SAFE, "precision grows; no rewrite")


def _timestamp_to_tz(old: SqlType, new: SqlType) -> Classification:
    return _time_precision(old, new) or Classification(
        Change.REWRITE, "values are read as local time in the session TimeZone (no rewrite only when it is UTC)")


def _interval(old: SqlType, new: SqlType) -> Classification:
    (old_fields, old_p), (new_fields, new_p) = (t.mods or (INTERVAL_ALL_FIELDS, INTERVAL_FULL_PRECISION)
                                                for t in (old, new))
    old_p, new_p = (6 if p == INTERVAL_FULL_PRECISION else p for p in (old_p, new_p))  # 6: microseconds
    if new_p < old_p:
        return Classification(Change.LOSSY, f"fractional seconds are rounded from {old_p} to {new_p} digits")
    if new_fields != INTERVAL_ALL_FIELDS and new_fields != old_fields:
        return Classification(Change.LOSSY, "the fields restriction truncates values (INTERVAL YEAR drops months "
                                            "and days)")
    return Classification(Change.SAFE, "no value changes; no rewrite, only the catalog changes")


TYPE_CHANGES: dict[tuple[str, str], Classifier] = {
    ("varchar", "varchar"): _text_limit,
    ("varchar", "text"): _text_limit,
    ("text", "varchar"): _text_limit,
    ("bpchar", "bpchar"): _char_length,
    ("bpchar", "varchar"): _fixed(Change.REWRITE,
                                  "char's trailing pad spaces are dropped (they carry no meaning in char)"),
    ("bpchar", "text"): _fixed(Change.REWRITE,
                               "char's trailing pad spaces are dropped (they carry no meaning in char)"),
    ("varchar", "bpchar"): _fixed(Change.LOSSY, "char(n) pads values with spaces and drops trailing spaces"),
    ("text", "bpchar"): _fixed(Change.LOSSY, "char(n) pads values with spaces and drops trailing spaces"),
    **{(a, b): _int_to_int for a in INTEGERS for b in INTEGERS if a != b},
    **{(a, "numeric"): _int_to_numeric for a in INTEGERS},
    **{("numeric", b): _numeric_to_int for b in INTEGERS},
    ("numeric", "numeric"): _numeric,
    ("float4", "float8"): _fixed(Change.REWRITE, "double precision holds every real exactly"),
    ("int2", "float4"): _fixed(Change.REWRITE, "every smallint is exact in a real"),
    ("int2", "float8"): _fixed(Change.REWRITE, "every smallint is exact in a double precision"),
    ("int4", "float8"): _fixed(Change.REWRITE, "every integer is exact in a double precision"),
    **{(a, a): _same_time_type for a in TIME_TYPES},
    ("timestamp", "timestamptz"): _timestamp_to_tz,
    ("timestamptz", "timestamp"): _fixed(Change.LOSSY, "drops the time zone: the repeated hour when daylight "
                                                       "saving time ends maps two instants to one value"),
    ("date", "timestamp"): _fixed(Change.REWRITE, "every date becomes midnight of that day"),
    ("date", "timestamptz"): _fixed(Change.REWRITE, "every date becomes midnight of that day in the session TimeZone"),
    ("timestamp", "date"): _fixed(Change.LOSSY, "drops the time of day"),
    ("timestamptz", "date"): _fixed(Change.LOSSY, "drops the time of day"),
    ("interval", "interval"): _interval,
    ("cidr", "inet"): _fixed(Change.SAFE, "every cidr is a valid inet with the same storage; no rewrite"),
    ("inet", "cidr"): _fixed(Change.LOSSY, "cidr zeroes the host bits (10.1.2.3/24 becomes 10.1.2.0/24)"),
    ("json", "jsonb"): _fixed(Change.LOSSY, "jsonb drops duplicate keys, key order and whitespace"),
    ("jsonb", "json"): _fixed(Change.REWRITE, "every jsonb value has a json text form"),
}


def classify(old: SqlType | None, new: SqlType, using: Node | None, column: str) -> Classification:
    """The class of changing `column` from `old` (None: unknown) to `new`."""
    if old is None:
        return Classification(Change.UNKNOWN, "its old type is unknown")
    if using is not None and not _plain_using(using, column, new):
        return Classification(Change.LOSSY, "the USING expression computes new values; it cannot be proven lossless")
    if old == new:
        return Classification(Change.SAME, "the type does not change")
    if old.array != new.array:
        return Classification(Change.LOSSY, "it converts between an array and a single value")
    classifier = TYPE_CHANGES.get((old.name, new.name))
    if classifier is not None:
        return classifier(old, new)
    if new.name == "text" or (new.name == "varchar" and not new.mods):
        return Classification(Change.REWRITE, "every value has a text form; the table is rewritten")
    if new.name in ("float4", "float8"):
        return Classification(Change.LOSSY, "binary floating point cannot hold every value exactly")
    return Classification(Change.LOSSY, f"no rule proves {old} to {new} lossless")


def _plain_using(using: Node, column: str, new: SqlType) -> bool:
    """USING col, or USING col::new_type: the same conversion as no USING at all."""
    if is_column_ref(using, column):
        return True
    cast = using.get("TypeCast")
    return bool(cast) and is_column_ref(cast.get("arg"), column) and type_from_ast(cast["typeName"]) == new
