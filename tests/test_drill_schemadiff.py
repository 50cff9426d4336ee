"""One schema comparison for drills (backup vs restored) and rehearsals (before UP vs after DOWN)."""
from handlers.schemadiff import RESTORED, ROLLED_BACK, schema_differences


def _schema(tables, columns=(), sequences=()):
    return {"tables": [{"schema": "public", "name": n, "kind": "table"} for n in tables],
            "columns": [{"table": f"public.{t}", "name": c, "type": ty, "not_null": False, "default": None}
                        for t, c, ty in columns],
            "indexes": [], "constraints": [], "sequences": list(sequences)}


def test_a_table_only_one_side_has_is_one_line_not_one_per_column():
    old = _schema(["Notes", "Tags"], [("Notes", "Id", "integer"), ("Tags", "Id", "integer"), ("Tags", "Name", "text")])
    new = _schema(["Notes"], [("Notes", "Id", "bigint")])
    assert schema_differences(old, new, RESTORED, sequence_values=True) == [
        "table public.Tags: missing from the restored database",
        "column Id on public.Notes: type is 'bigint' restored, 'integer' in the backup"]
    assert schema_differences(old, new, ROLLED_BACK, sequence_values=False) == [
        "table public.Tags: there before UP, missing after DOWN",
        "column Id on public.Notes: type is 'bigint' after DOWN, 'integer' before UP"]


def test_sequence_values_count_for_a_restore_only():
    seq = {"name": "public.Notes_Id_seq", "owned_by_column": "public.Notes.Id"}
    old = _schema([], sequences=[{**seq, "value": 100, "column_max": 100}])
    new = _schema([], sequences=[{**seq, "value": 5, "column_max": 100}])
    restored = schema_differences(old, new, RESTORED, sequence_values=True)
    assert len(restored) == 1 and "restored value 5 is below the largest public.Notes.Id value 100" in restored[0]
    assert schema_differences(old, new, ROLLED_BACK, sequence_values=False) == []
