"""The job areas. Each module (or package) ends in one `AREA = Area(...)` that says everything it
adds to the bot; `AREAS` lists them in the order `help`, `status` and the schedules show them.
The front ends hand `Registry(AREAS)` to the service, the CLI and the Slack app."""
from __future__ import annotations

from ..core.registry import Area
from . import backup, demo, drill, indexes, migrations, overview, postgres, readonly, render, restore, sizeplan

AREAS: tuple[Area, ...] = (overview.AREA, backup.AREA, demo.AREA, indexes.AREA, drill.AREA, migrations.AREA,
                           readonly.AREA, render.AREA, restore.AREA, postgres.AREA, sizeplan.AREA)
