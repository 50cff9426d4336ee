"""Missing indexes, found from the slow queries and proven on a copy: `indexes suggest`.

read_workload() reads production (pg_stat_statements, tables, indexes; read-only); suggest() restores
the newest verified backup into a throwaway server of the target's own major and proves each
candidate there with real plans and real values (handlers.indexes.advice.proof). Nothing is ever
created on production: a suggestion is handed to the migration gate (`--request N`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ...lazy import lazy_exports

if TYPE_CHECKING:  # at run time each name is imported on first use: see handlers/lazy.py
    from .result import Advice, Suggestion
    from .run import suggest, version_text
    from .settings import AdviceSettings
    from .workload import Workload, read_workload

__all__ = ["Advice", "AdviceSettings", "Suggestion", "Workload", "read_workload", "suggest", "version_text"]

__getattr__, __dir__ = lazy_exports(__name__, {
    ".result": ("Advice", "Suggestion"),
    ".run": ("suggest", "version_text"),
    ".settings": ("AdviceSettings",),
    ".workload": ("Workload", "read_workload"),
})
