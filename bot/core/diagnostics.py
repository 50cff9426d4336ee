"""Migration findings in a terminal, the way compilers (and Squawk) print them:

    forbidden[drop-column]: drops "Notes"."IsPinned", which holds data
      --> drop_pinned.up.sql:2
       |
     2 | ALTER TABLE "Notes" DROP COLUMN "IsPinned";
       | ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
      help: expand/contract: stop reading the column first, ...

and, for CI, one line each: `drop_pinned.up.sql:2: forbidden[drop-column]: drops ...`.
A finding is the dict `Finding.to_json` gives (code, severity, line, statement, message, hint).
"""
from __future__ import annotations

import textwrap


def _one_line(text: str) -> str:
    return " ".join(str(text or "").split())


def _location(path: str, line: int) -> str:
    return f"{path}:{line}" if line else path


def finding_lines(finding: dict, path: str, width: int) -> list[str]:
    head = f"{finding['severity']}[{finding['code']}]: "
    lines = textwrap.wrap(head + _one_line(finding.get("message")), width, subsequent_indent="    ",
                          break_on_hyphens=False)
    lines.append(f"  --> {_location(path, finding['line'])}")
    source = next((s for s in str(finding.get("statement") or "").splitlines() if s.strip()), "")
    if finding["line"] and source:
        number = str(finding["line"])
        gutter = " " * (len(number) + 1)
        room = max(10, width - len(gutter) - 3)
        shown = source.rstrip() if len(source.rstrip()) <= room else source[:room - 3].rstrip() + "..."
        start = len(shown) - len(shown.lstrip())
        lines += [f"{gutter} |", f" {number} | {shown}", f"{gutter} | {' ' * start}{'^' * (len(shown) - start)}"]
    if finding.get("hint"):
        lines += textwrap.wrap("  help: " + _one_line(finding["hint"]), width, subsequent_indent="        ",
                               break_on_hyphens=False)
    return lines


def diagnostics_text(findings: list[dict], path: str, width: int) -> list[str]:
    lines: list[str] = []
    for finding in findings:
        if lines:
            lines.append("")
        lines += finding_lines(finding, path, width)
    return lines


def diagnostics_oneline(findings: list[dict], path: str) -> str:
    """`file:line: severity[code]: message`, one line a finding (file-level findings have no line)."""
    return "".join(f"{_location(path, f['line'])}: {f['severity']}[{f['code']}]: {_one_line(f.get('message'))}\n"
                   for f in findings)
