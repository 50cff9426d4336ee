"""Column types in one comparable form, whether read from the migration's SQL or the catalog."""
from __future__ import annotations

from typing import NamedTuple

from .nodes import Node, const_value, strings

# Spellings a TypeName can carry when written as a plain identifier (the grammar already maps
# keywords such as `integer` or `character varying` to pg_catalog.int4 / pg_catalog.varchar).
_ALIASES = {
    "int": "int4", "integer": "int4", "smallint": "int2", "bigint": "int8",
    "serial": "int4", "serial4": "int4", "bigserial": "int8", "serial8": "int8",
    "smallserial": "int2", "serial2": "int2",
    "real": "float4", "float": "float8", "decimal": "numeric",
    "boolean": "bool", "char": "bpchar", "character": "bpchar", "character varying": "varchar",
}
SERIALS = frozenset({"serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"})

_DISPLAY = {
    "int2": "smallint", "int4": "integer", "int8": "bigint", "float4": "real",
    "float8": "double precision", "bpchar": "char", "bool": "boolean",
}
# Types whose catalog typmod is "length + 4" (VARHDRSZ) or a plain precision.
_LENGTH_TYPES = frozenset({"varchar", "bpchar"})
_PRECISION_TYPES = frozenset({"timestamp", "timestamptz", "time", "timetz", "bit", "varbit"})
# interval's typmod packs a fields restriction (YEAR, DAY TO SECOND, ...) and a precision; both "none"
# are these values. An interval's mods are (fields, precision), or () for a plain interval.
INTERVAL_ALL_FIELDS, INTERVAL_FULL_PRECISION = 0x7FFF, 0xFFFF


class SqlType(NamedTuple):
    name: str  # internal name: int4, varchar, numeric, timestamptz, ... or schema.name for user types
    mods: tuple[int, ...] = ()  # varchar(n) -> (n,), numeric(p,s) -> (p, s), timestamp(p) -> (p,)
    array: bool = False

    def __str__(self) -> str:
        text = _DISPLAY.get(self.name, self.name)
        if self.name == "interval" and self.mods:
            fields, precision = self.mods
            text += f"({precision})" if precision != INTERVAL_FULL_PRECISION else ""
            text += " (restricted fields)" if fields != INTERVAL_ALL_FIELDS else ""
        elif self.mods:
            text += "(" + ",".join(str(m) for m in self.mods) + ")"
        return text + ("[]" if self.array else "")


def type_from_ast(type_name: Node) -> SqlType:
    """The SqlType a TypeName node spells."""
    names = strings(type_name.get("names"))
    if names and names[0] == "pg_catalog":
        names = names[1:]
    name = ".".join(names).lower() if len(names) > 1 else (names[0] if names else "?")
    name = _ALIASES.get(name, name)
    mods = tuple(v for v in (const_value(m) for m in type_name.get("typmods", ())) if isinstance(v, int))
    if name == "numeric" and len(mods) == 1:
        mods = (mods[0], 0)  # numeric(p) means numeric(p,0)
    if name == "interval":
        mods = _interval_mods(*(mods + (INTERVAL_FULL_PRECISION,))[:2]) if mods else ()
    return SqlType(name, mods, bool(type_name.get("arrayBounds")))


def type_from_catalog(typname: str, typmod: int, is_array: bool) -> SqlType:
    """The SqlType of pg_attribute's (element type name, atttypmod)."""
    mods: tuple[int, ...] = ()
    if typmod >= 0:
        if typname in _LENGTH_TYPES and typmod >= 4:
            mods = (typmod - 4,)
        elif typname == "numeric" and typmod >= 4:
            packed = typmod - 4
            scale = ((packed & 0x7FF) ^ 1024) - 1024  # 11-bit signed since PostgreSQL 15
            mods = ((packed >> 16) & 0xFFFF, scale)
        elif typname in _PRECISION_TYPES:
            mods = (typmod,)
        elif typname == "interval":
            mods = _interval_mods((typmod >> 16) & 0x7FFF, typmod & 0xFFFF)
    return SqlType(typname, mods, is_array)


def _interval_mods(fields: int, precision: int) -> tuple[int, ...]:
    return () if (fields, precision) == (INTERVAL_ALL_FIELDS, INTERVAL_FULL_PRECISION) else (fields, precision)
