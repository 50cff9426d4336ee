"""dbops: the Slack bot, its command registry, jobs, approvals, scheduler, state store and CLI."""

__version__ = "0.1.0"


def load_commands() -> None:
    """Imports the modules that declare commands (they register themselves)."""
    from . import (  # noqa: F401
        backup_commands, commands, demo, drill_commands, index_commands, migrate_commands, migrate_slack,
        readonly_commands, render_api_commands, restore_commands,
    )
