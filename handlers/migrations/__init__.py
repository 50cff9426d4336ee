"""Migration safety analysis for `dbops migrate check` (breaking changes go expand/contract;
DROP TABLE, DROP COLUMN with data, lossy type changes and irreversible migrations
need manual approval). Rules live one per file in `rules/`."""
from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # at run time each name is imported on first use: see handlers/lazy.py
    from .apply import ApplyResult, apply_migration, plan_batches
    from .check import check_migration
    from .model import Finding, MigrationCheck, Severity
    from .parsing import Statement, parse_statements
    from .rehearsal import Rehearsal, rehearse
    from .rules import all_rules
    from .settings import ApplySettings, MigrationCheckSettings, RehearsalSettings

__all__ = [
    "check_migration", "Finding", "MigrationCheck", "MigrationCheckSettings", "Severity", "Statement",
    "parse_statements", "all_rules",
]
# The migration rehearsal and the safe apply.
__all__ += [
    "ApplyResult", "ApplySettings", "apply_migration", "plan_batches",
    "Rehearsal", "RehearsalSettings", "rehearse",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    ".check": ("check_migration",),
    ".model": ("Finding", "MigrationCheck", "Severity"),
    ".parsing": ("Statement", "parse_statements"),
    ".rules": ("all_rules",),
    # the settings apart from the code that runs them: checking dbops.toml loads no database driver
    ".settings": ("ApplySettings", "MigrationCheckSettings", "RehearsalSettings"),
    ".apply": ("ApplyResult", "apply_migration", "plan_batches"),
    ".rehearsal": ("Rehearsal", "rehearse"),
})
