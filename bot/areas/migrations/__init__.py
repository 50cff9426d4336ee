"""Migrations: check, request (rehearsed, approved by reaction), gate for the deploy pipeline,
apply after a fresh backup, and what an apply a stopped process left did.

`commands` holds the terminal commands and the request they record, `flow` the rehearsal,
apply and recovery, `slack` the Slack form.
"""
from __future__ import annotations

from handlers import migrations
from handlers.errors import ConfigError

from ...core.config import Settings
from ...core.registry import Area, StatusLine
from .commands import migrate_check, migrate_gate, migrate_request, migrate_status, pending_line
from .flow import APPLIER, leftover_rehearsals_at_startup
from .slack import FORM, migrate_check_form, migrate_request_form


def migrate_settings(settings: Settings) -> None:
    """[migrate.check], [migrate.rehearsal] and [migrate.apply]; no other table under [migrate]."""
    section = settings.section("migrate")
    # Looked up when its table is there: the rehearsal's and the apply's modules load psycopg, which
    # `dbops migrate check` has no use for.
    parsers = {"check": lambda d: migrations.MigrationCheckSettings.from_dict(d),
               "rehearsal": lambda d: migrations.RehearsalSettings.from_dict(d),
               "apply": lambda d: migrations.ApplySettings.from_dict(d)}
    for name, value in section.items():
        if name not in parsers:
            raise ConfigError(f"[migrate.{name}] is not a section dbops knows; known: "
                              + ", ".join(f"[migrate.{k}]" for k in parsers))
        if not isinstance(value, dict):
            raise ConfigError(f"[migrate.{name}] must be a table of settings")
        parsers[name](value)


AREA = Area(
    "migrate",
    commands=(migrate_check, migrate_request, migrate_gate, migrate_status, migrate_request_form, migrate_check_form),
    settings=(("migrate", migrate_settings),),
    status_lines=(StatusLine(pending_line, per_target=False),),
    startup=(leftover_rehearsals_at_startup,),
    appliers=(APPLIER,),
    forms=(FORM,),
)
