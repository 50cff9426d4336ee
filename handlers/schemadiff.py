"""What differs between two captures of a schema (backup.manifest.capture_schema's shape), in words.

A drill compares a backup with the database restored from it; a rehearsal compares the schema before
UP with the schema after DOWN. Both ask the same question, so one comparison serves, and `Sides` says
what the two captures are called in the sentences.

The two captures may come from servers of different PostgreSQL majors (a restore into a newer major,
a drill run with --allow-newer-major). What only the major changes is not a difference of the
database, so `comparable` takes it out of both, here, for every caller (see `_VERSION_SHAPES`).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sides:
    old: str  # where the first capture comes from: "in the backup", "before UP"
    new: str  # where the second one comes from: "restored", "after DOWN"
    missing: str  # said of what only the first has
    extra: str  # said of what only the second has


RESTORED = Sides(old="in the backup", new="restored", missing="missing from the restored database",
                 extra="in the restored database but not in the backup")
ROLLED_BACK = Sides(old="before UP", new="after DOWN", missing="there before UP, missing after DOWN",
                    extra="not there before UP, still there after DOWN")

# (kind, key in the capture, fields that must match)
_PARTS = (("column", "columns", ("type", "not_null", "default")),
          ("index", "indexes", ("definition",)),
          ("constraint", "constraints", ("type", "definition", "validated")))


def major_of(server_version_num: int | str | None) -> int | None:
    """16 from 160004; None when unknown (0 or missing, as an older manifest may have it)."""
    try:
        num = int(server_version_num or 0)
    except (TypeError, ValueError):
        return None
    return num // 10000 if num >= 100000 else None


def _not_null_rows(old_major: int, new_major: int) -> bool:
    """From 18 on a NOT NULL is also a pg_constraint row (named "<table>_<column>_not_null", with a
    definition); before 18 it is only attnotnull, which both sides' columns carry as not_null."""
    return (old_major >= 18) != (new_major >= 18)


# (what differs by major, when, how it is taken out of both captures)
_VERSION_SHAPES = (
    ("NOT NULL constraints", _not_null_rows,
     lambda capture: {**capture, "constraints": [c for c in capture.get("constraints", [])
                                                 if c.get("type") != "not null"]}),
)


def comparable(old: dict, new: dict, majors: tuple[int | None, int | None]) -> tuple[dict, dict, list[str]]:
    """The two schema captures with what only their servers' majors make differ taken out of both, and
    what was taken out, in words. Unknown or equal majors: the captures as they are."""
    old_major, new_major = majors
    if old_major is None or new_major is None or old_major == new_major:
        return old, new, []
    said = []
    for what, applies, strip in _VERSION_SHAPES:
        if applies(old_major, new_major):
            old, new = strip(old), strip(new)
            said.append(f"{what} (PostgreSQL {old_major} and {new_major} record them differently)")
    return old, new, said


def schema_differences(old: dict, new: dict, sides: Sides, *, sequence_values: bool,
                       majors: tuple[int | None, int | None] = (None, None)) -> list[str]:
    """Differences between two schema captures; [] = the same.

    The columns, indexes and constraints of a table that only one side has go without saying.
    `sequence_values`: also demand that each sequence hands out values above its column's largest
    (true for a restore; a rehearsal's sequences move outside transactions and are not compared).
    `majors`: the PostgreSQL majors the two captures were made on (see `comparable`).
    """
    old, new, _ = comparable(old, new, majors)
    diffs: list[str] = []
    old_tables = {f"{t['schema']}.{t['name']}": t for t in old.get("tables", [])}
    new_tables = {f"{t['schema']}.{t['name']}": t for t in new.get("tables", [])}
    for key in sorted(old_tables.keys() - new_tables.keys()):
        diffs.append(f"{old_tables[key]['kind']} {key}: {sides.missing}")
    for key in sorted(new_tables.keys() - old_tables.keys()):
        diffs.append(f"{new_tables[key]['kind']} {key}: {sides.extra}")
    for key in sorted(old_tables.keys() & new_tables.keys()):
        if old_tables[key]["kind"] != new_tables[key]["kind"]:
            diffs.append(f"{key}: a {old_tables[key]['kind']} {sides.old}, a {new_tables[key]['kind']} {sides.new}")
    only_old = old_tables.keys() - new_tables.keys()
    only_new = new_tables.keys() - old_tables.keys()
    for kind, part, fields in _PARTS:
        a = {(o["table"], o["name"]): o for o in old.get(part, []) if o["table"] not in only_old}
        b = {(o["table"], o["name"]): o for o in new.get(part, []) if o["table"] not in only_new}
        for table, name in sorted(a.keys() - b.keys()):
            diffs.append(f"{kind} {name} on {table}: {sides.missing}")
        for table, name in sorted(b.keys() - a.keys()):
            diffs.append(f"{kind} {name} on {table}: {sides.extra}")
        for key in sorted(a.keys() & b.keys()):
            for f in fields:
                if a[key].get(f) != b[key].get(f):
                    diffs.append(f"{kind} {key[1]} on {key[0]}: {f} is {b[key].get(f)!r} {sides.new}, "
                                 f"{a[key].get(f)!r} {sides.old}")
    diffs += _sequence_differences(old.get("sequences", []), new.get("sequences", []), sides, sequence_values)
    return diffs


def _sequence_differences(old: list[dict], new: list[dict], sides: Sides, values: bool) -> list[str]:
    diffs = []
    a = {s["name"]: s for s in old}
    b = {s["name"]: s for s in new}
    for name in sorted(a.keys() - b.keys()):
        diffs.append(f"sequence {name}: {sides.missing}")
    for name in sorted(b.keys() - a.keys()):
        diffs.append(f"sequence {name}: {sides.extra}")
    for name in sorted(a.keys() & b.keys()):
        before, after = a[name], b[name]
        if before.get("owned_by_column") != after.get("owned_by_column"):
            diffs.append(f"sequence {name}: owned by {after.get('owned_by_column')} {sides.new}, "
                         f"{before.get('owned_by_column')} {sides.old}")
        if not values:
            continue
        # Only a restore asks this, so it speaks of one. The restored rows decide: the next value handed
        # out must be above every existing one.
        top = after.get("column_max") if after.get("column_max") is not None else before.get("column_max")
        if top is None:
            continue
        if after.get("value") is None:
            diffs.append(f"sequence {name}: never used in the restored database, but "
                         f"{after.get('owned_by_column') or 'its column'} already holds values up to {top}")
        elif after["value"] < top:
            diffs.append(f"sequence {name}: restored value {after['value']} is below the largest "
                         f"{after.get('owned_by_column') or 'column'} value {top}: the next insert would collide")
    return diffs
