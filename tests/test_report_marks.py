"""A report's marks come from the renderer: handlers and areas give a note its level (handlers/report.py's
Note) and bot/core/parts.py writes ":warning:"; none of them spells the mark, or a leading "WARNING:", in a
string of its own. Docstrings may name the mark; comments are not strings."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def spelled_marks(source: str, name: str) -> list[str]:
    tree = ast.parse(source, name)
    skip = _docstrings(tree)
    return [f"{name}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
            and (":warning:" in node.value or node.value.lstrip().startswith("WARNING:"))]


def test_no_handler_or_area_spells_a_warning_mark():
    files = sorted([*(ROOT / "handlers").rglob("*.py"), *(ROOT / "bot" / "areas").rglob("*.py")])
    assert len(files) > 50  # the scan found the code
    assert [hit for path in files for hit in spelled_marks(path.read_text(), str(path.relative_to(ROOT)))] == []


def test_the_scan_sees_marks_in_plain_and_formatted_strings():
    sample = ('"""A docstring may say :warning:."""\n'
              'A = ":warning: plain"\nB = f"{A}: :warning: formatted"\nC = "WARNING: leading"\n'
              'D = "a warning: not a mark"  # :warning: in a comment\n'
              'def f():\n    """Nor :warning: here."""\n    return " WARNING: indented"\n')
    assert sorted(int(hit.split(":")[1]) for hit in spelled_marks(sample, "sample.py")) == [2, 3, 4, 8]


def rewritten_reports(source: str, name: str) -> list[str]:
    """Assignments to a report's summary or title (`x.summary = ...`, `x.title += ...`): an area that
    rewrites what a handler built, instead of adding a note or passing the title when it is built."""
    hits = []
    for node in ast.walk(ast.parse(source, name)):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        hits += [f"{name}:{node.lineno}: .{t.attr}" for t in targets
                 if isinstance(t, ast.Attribute) and t.attr in ("summary", "title")]
    return hits


def test_no_area_rewrites_a_reports_summary_or_title():
    files = sorted((ROOT / "bot" / "areas").rglob("*.py"))
    assert [hit for path in files for hit in rewritten_reports(path.read_text(), str(path.relative_to(ROOT)))] == []


def test_the_rewrite_scan_sees_plain_and_augmented_assignments():
    sample = ('report.summary = "x"\nreport.title += "y"\nsummary = "not a report\'s"\n'
              'Report(summary="built, not rewritten")\n')
    assert sorted(int(hit.split(":")[1]) for hit in rewritten_reports(sample, "sample.py")) == [1, 2]
