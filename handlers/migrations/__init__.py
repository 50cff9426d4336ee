"""Migration safety analysis for `dbops migrate check` (breaking changes go expand/contract;
DROP TABLE, DROP COLUMN with data, lossy type changes and irreversible migrations
need manual approval). Rules live one per file in `rules/`."""
from .check import check_migration
from .model import Finding, MigrationCheck, Severity
from .parsing import Statement, parse_statements
from .rules import all_rules
from .settings import MigrationCheckSettings

__all__ = [
    "check_migration", "Finding", "MigrationCheck", "MigrationCheckSettings", "Severity", "Statement",
    "parse_statements", "all_rules",
]

# The migration rehearsal and the safe apply.
from .apply import ApplyResult, ApplySettings, apply_migration, plan_batches  # noqa: E402
from .rehearsal import Rehearsal, RehearsalSettings, rehearse  # noqa: E402

__all__ += [
    "ApplyResult", "ApplySettings", "apply_migration", "plan_batches",
    "Rehearsal", "RehearsalSettings", "rehearse",
]
