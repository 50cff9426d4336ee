"""`indexes` (the review), `digest` (what changed), the daily index snapshot and the daily digest."""
from __future__ import annotations

import argparse
import dataclasses
from datetime import datetime, time, timezone
from zoneinfo import ZoneInfo

from handlers import backup, config_values, indexes
from handlers.errors import ConfigError, DbopsError, UsageError
from handlers.indexes.settings import DIGEST
from handlers.report import Level, Note, Progress, Report

from ..core import parts
from ..core.command import Arg, command, whole_number
from ..core.config import Settings, read_once
from ..core.registry import Area, Bot, Invocation, Schedule
from ..core.scheduler import daily_slot, next_daily
from .backup import backup_settings
from .backup import catalog as backup_catalog

ADVICE_WORK = "advice-work"  # the folder holding the backup restored for `indexes suggest`


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
        note = text if isinstance(text, Note) else Note(Level.INFO if ok else Level.WARNING, text)
        extra.append(f"{title}: {parts.note_line(note)}")

    def suggested_indexes(previous: dict) -> tuple[list[str], dict]:
        import psycopg

        from handlers.indexes.advice.followup import follow_up

        try:
            with inv.target.connect() as conn:
                conn.autocommit = True
                lines, state = follow_up(conn, _followed(inv), previous, datetime.now(timezone.utc),
                                         settings.window_days)
        except (DbopsError, psycopg.Error) as exc:  # the rest of the digest is posted all the same
            reason = exc if isinstance(exc, DbopsError) else f"SQLSTATE {exc.sqlstate or 'unknown'}"
            why = f"the suggested indexes could not be followed today ({reason})"
            return [parts.note_line(Note.warning(why))], previous
        return _last_suggestions(inv) + [parts.note_line(note) for note in lines], state

    return indexes.build_digest(inv.store.dsn, inv.target_name, found, extra, indexes=suggested_indexes).to_report()


# -- missing indexes -----------------------------------------------------------------------
def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{value} is out of range: give a share above 0 and at most 1, e.g. 0.5")
    return value


@command("indexes suggest", "missing indexes found from the slow queries, proven on a copy of the latest backup",
         Arg("--backup", "a backup id (default: the newest verified backup of the target)"),
         Arg("--min-gain", "keep an index only when it cuts a statement's plan cost by this share (default: "
                           "indexes.advice.min_gain, 0.5)", type=_share),
         Arg("--request", "file suggestion N as a migration request (CREATE INDEX CONCURRENTLY, rehearsed, approved "
                          "by reaction)", type=whole_number(1, 99)),
         long_running=True, lock="advice")
def indexes_suggest(inv: Invocation) -> Report:
    from handlers.indexes import advice
    from handlers.migrations.rehearsal import RehearsalSettings
    from handlers.postgres import private_work_dir

    settings = index_settings(inv.settings)
    wanted = settings.advice if inv.args.min_gain is None else dataclasses.replace(settings.advice,
                                                                                  min_gain=inv.args.min_gain)
    catalog = backup_catalog(inv)
    record = _backup_for_advice(catalog, inv.target_name, inv.args.backup)
    with inv.target.connect() as conn:
        conn.read_only = True
        workload = advice.read_workload(conn, settings, inv.target_name)
    copy = RehearsalSettings.from_dict(dict(inv.settings.section("migrate").get("rehearsal", {})))
    with private_work_dir(ADVICE_WORK, copy.work_dir) as work:
        inv.progress(Progress(f"fetching backup {record.id} for the copy"))
        archive, manifest = backup.materialize(catalog, backup_settings(inv.settings), record.id, work)
        found = advice.suggest(workload, archive, backup_id=record.id, backup_created_at=manifest.created_at,
                               settings=wanted, work_dir=copy.work_dir, jobs=copy.jobs, progress=inv.progress,
                               cancel=inv.cancel, backup_version_num=manifest.server_version_num)
    report = found.to_report(inv.command_prefix)
    if inv.args.request is not None:
        return _file_request(inv, found, inv.args.request, report)
    return report


def _backup_for_advice(catalog, target: str, backup_id: str | None):
    if backup_id:
        return catalog.require(backup_id)  # materialize refuses one without an archive, saying why
    record = backup.latest_verified(catalog, target)
    if record is None:
        raise UsageError(f"no verified backup of `{target}` to prove suggestions on: take one with `backup` "
                         "(suggestions are proven on a copy of it, never on the target)")
    return record


def _file_request(inv: Invocation, found, number: int, report: Report) -> Report:
    """Suggestion `number` through the migration gate: UP creates it concurrently, DOWN drops it."""
    from .migrations.commands import build_request

    if number > len(found.suggestions):
        raise UsageError(f"there is no suggestion {number}: this run suggested {len(found.suggestions)} "
                         f"(`{inv.command_prefix} indexes suggest` lists them)")
    chosen = found.suggestions[number - 1]
    req, request_report = build_request(
        inv, up_sql=chosen.statement + "\n", down_sql=chosen.down + "\n", name=f"add-index-{chosen.name}",
        attested_by=None, apply_by="bot", channel=inv.channel,
        extra={"advice": chosen.request_payload(datetime.now(timezone.utc).isoformat())})
    request_report.notes.insert(0, Note(Level.INFO, f"suggestion {number}, {chosen.name}, filed as request "
                                                    f"`{req.code}`; the bot posts it to the ops channel."))
    request_report.data |= {"request": req.code, "sha256": req.sha256, "status": req.status,
                            "suggestion": chosen.to_json(), "advice": found.to_json()}
    return request_report


def _followed(inv: Invocation):
    """The migration requests made from suggestions on this target, for the digest's follow-up."""
    from handlers.indexes.advice.followup import Followed

    from ..core.approvals.book import ApprovalBook

    return [Followed(r.code, str(r.status), r.applied_at, r.payload["advice"])
            for r in ApprovalBook(inv.store).recent(200)
            if r.kind == "migration" and r.target == inv.target_name and isinstance(r.payload.get("advice"), dict)]


def _last_suggestions(inv: Invocation) -> list[str]:
    """One line for the newest `indexes suggest` of this target (its job's stored report; with --request,
    the request's report holding the suggestions under "advice")."""
    with inv.store.pool.connection() as conn:
        row = conn.execute(
            "SELECT finished_at, coalesce(result -> 'advice', result) AS result FROM dbops.jobs WHERE target = %s"
            " AND command LIKE 'indexes suggest%%' AND coalesce(result -> 'advice', result) ? 'suggestions'"
            " ORDER BY finished_at DESC NULLS LAST LIMIT 1", (inv.target_name,)).fetchone()
    if row is None:  # quiet days stay short: no line until the team has asked once
        return []
    finished, result = row["finished_at"], row["result"]  # the store's rows are dicts
    names = [f"{s['name']} ({s['table']})" for s in result.get("suggestions", [])]
    when = f"{finished:%Y-%m-%d}" if finished else "?"
    if not names:
        return [f"last `indexes suggest` ({when}, backup {result.get('backup_id')}): no index suggested"]
    return [f"last `indexes suggest` ({when}, backup {result.get('backup_id')}): {len(names)} suggested: "
            + ", ".join(names) + f"; `{inv.command_prefix} indexes suggest --request N` files one"]


def leftover_copies_at_startup(svc: Bot) -> list[str]:
    """A killed `indexes suggest` leaves a server holding a copy of production and its archive."""
    from handlers.indexes.advice.copy import ADVICE_PURPOSE
    from handlers.migrations.rehearsal import RehearsalSettings
    from handlers.postgres import remove_leftover_instances

    work_dir = RehearsalSettings.from_dict(dict(svc.settings.section("migrate").get("rehearsal", {}))).work_dir
    return [f"removed a leftover `indexes suggest` {what} ({path.name}) from {path.parent}"
            for purpose, what in ((ADVICE_PURPOSE, "server"), (ADVICE_WORK, "work folder"))
            for path in remove_leftover_instances(work_dir, purpose=purpose)]


# -- schedules -----------------------------------------------------------------------------
@read_once
def digest_time(settings: Settings) -> tuple[time | None, ZoneInfo]:
    found = config_values.read("digest", DIGEST, settings.section("digest"))
    return found["time"], ZoneInfo(found["timezone"])


def _digest_slot(svc: Bot, now: datetime) -> str | None:
    at, tz = digest_time(svc.settings)
    return daily_slot(now, at, tz) if at else None


def _post_digests(svc: Bot) -> None:
    for name in svc.settings.watched_targets:
        svc.run_scheduled(["digest", "--target", name])


def _snapshot_slot(svc: Bot, now: datetime) -> str | None:
    return daily_slot(now, time(0, 5), timezone.utc)


def _take_snapshots(svc: Bot) -> None:
    for target in (svc.settings.targets[name] for name in svc.settings.watched_targets):
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
    commands=(indexes_command, indexes_suggest, digest_command),
    settings=(("indexes", index_settings), ("digest", digest_time)),
    schedules=(Schedule("index-snapshot", _snapshot_slot, _take_snapshots,
                        lambda settings, now: "Index usage snapshot daily at 00:05 UTC."),
               Schedule("digest", _digest_slot, _post_digests, _describe_digest)),
    startup=(leftover_copies_at_startup,),
)
