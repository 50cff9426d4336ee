"""`indexes` (the review), `digest` (what changed), the daily index snapshot and the daily digest."""
from __future__ import annotations

from datetime import datetime, time, timezone
from zoneinfo import ZoneInfo

from handlers import config_values, indexes
from handlers.errors import ConfigError
from handlers.indexes.settings import DIGEST
from handlers.report import Report

from ..core.command import command
from ..core.config import Settings, read_once
from ..core.registry import Area, Bot, Invocation, Schedule
from ..core.scheduler import daily_slot, next_daily


@read_once
def index_settings(settings: Settings) -> indexes.IndexSettings:
    return indexes.IndexSettings.from_dict(settings.section("indexes"))


def _state_dsn(inv: Invocation) -> str | None:
    return inv.store.dsn if inv.store is not None else None


@command("indexes", "index review: expected, unused, invalid, duplicate and missing indexes, slow queries",
         long_running=True)
def indexes_command(inv: Invocation) -> Report:
    settings = index_settings(inv.settings)
    with inv.target.connect() as conn:
        conn.autocommit = True
        if inv.store is not None:  # today's counters join the history the unused check reads
            indexes.take_snapshot(conn, inv.store.dsn, inv.target_name)
        found = indexes.review(conn, settings, _state_dsn(inv), inv.target_name, progress=inv.progress)
    return found.to_report()


@command("digest", "the index-health digest now: headline, what changed since the last one, backups, drills",
         long_running=True)
def digest_command(inv: Invocation) -> Report:
    if inv.store is None:
        raise ConfigError("the digest compares with the previous one in the state store: set DBOPS_STATE_URL "
                          "(or DATABASE_URL)")
    settings = index_settings(inv.settings)
    with inv.target.connect() as conn:
        conn.autocommit = True
        indexes.take_snapshot(conn, inv.store.dsn, inv.target_name)
        found = indexes.review(conn, settings, inv.store.dsn, inv.target_name, progress=inv.progress)
    extra = []
    for provider in inv.registry.status_lines:  # the same one-liners /db status shows: backup freshness, last drill
        said = provider.line(inv)
        if said is None:
            continue
        title, ok, text = said
        extra.append(f"{title}: " + ("" if ok else ":warning: ") + text)
    return indexes.build_digest(inv.store.dsn, inv.target_name, found, extra).to_report()


# -- schedules -----------------------------------------------------------------------------
@read_once
def digest_time(settings: Settings) -> tuple[time | None, ZoneInfo]:
    found = config_values.read("digest", DIGEST, settings.section("digest"))
    return found["time"], ZoneInfo(found["timezone"])


def _digest_slot(svc: Bot, now: datetime) -> str | None:
    at, tz = digest_time(svc.settings)
    return daily_slot(now, at, tz) if at else None


def _post_digests(svc: Bot) -> None:
    for name in svc.settings.targets:
        svc.run_scheduled(["digest", "--target", name])


def _snapshot_slot(svc: Bot, now: datetime) -> str | None:
    return daily_slot(now, time(0, 5), timezone.utc)


def _take_snapshots(svc: Bot) -> None:
    for target in svc.settings.targets.values():
        with target.connect() as conn:
            conn.autocommit = True
            indexes.take_snapshot(conn, svc.store.dsn, target.name)


def _describe_digest(settings: Settings, now: datetime) -> str:
    at, tz = digest_time(settings)
    if at is None:
        return "Daily digest: off (digest.time = \"off\")."
    return f"Daily digest at {at:%H:%M} {tz.key}; next {next_daily(now, at, tz):%Y-%m-%d %H:%M %Z}."


AREA = Area(
    "indexes",
    commands=(indexes_command, digest_command),
    settings=(("indexes", index_settings), ("digest", digest_time)),
    schedules=(Schedule("index-snapshot", _snapshot_slot, _take_snapshots,
                        lambda settings, now: "Index usage snapshot daily at 00:05 UTC."),
               Schedule("digest", _digest_slot, _post_digests, _describe_digest)),
)
