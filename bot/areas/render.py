"""`render status`, `render drill` (approvers: a billed Render instance), `render export-drill`, the
Render line of `/db status` and the digest, and the start-up removal of leftover drill instances.
Thin: the work is in handlers/render."""
from __future__ import annotations

import logging

from handlers import drill, render
from handlers.errors import ConfigError, DbopsError
from handlers.report import Level, Note, Report, Section

from ..core.command import Arg, command
from ..core.config import DEFAULT_TARGET, Settings, read_once
from ..core.registry import Area, Bot, Invocation, Schedule, StatusLine
from .backup import backup_settings, recovery_copy_for_anyone
from .backup import catalog as backup_catalog
from .drill import drill_settings
from .indexes import index_settings

log = logging.getLogger("dbops.render")


@read_once
def render_settings(settings: Settings) -> render.RenderSettings:
    return render.RenderSettings.from_config(settings.section("render"))


def _postgres_id(inv: Invocation) -> str:
    name = inv.target_name
    return render.postgres_id_for(name, getattr(inv.settings, "target_options", {}).get(name), DEFAULT_TARGET)


def _state(inv: Invocation):
    if inv.store is None:
        raise ConfigError("Render drills are recorded in the state store: set DBOPS_STATE_URL (or DATABASE_URL)")
    return inv.store


@command("render status", "Render's own backups: the instance, the point-in-time recovery window against the "
                          "plan's, the newest export", needs_state=False)
def render_status(inv: Invocation) -> Report:
    settings = render_settings(inv.settings)
    with settings.client() as client:
        found = render.check_status(client, _postgres_id(inv), settings)
    return render.status_report(found, inv.target_name, prefix=inv.command_prefix)


def _record(inv: Invocation, result: drill.DrillResult) -> str:
    return drill.DrillStore(_state(inv).dsn).record(inv.target_name, result.backup_id, result, inv.actor)


@command("render drill", "restore drill on Render: point-in-time recovery into a new instance, verify it against "
                         "production, delete it, report (the instance is billed while it exists)",
         long_running=True, lock="drill", who="approvers", cancellable=True)
def render_drill(inv: Invocation) -> Report:
    from handlers.drill.runner import DrillInterrupted  # psycopg, psutil: imported when a drill runs

    _state(inv)
    settings = render_settings(inv.settings)
    with settings.client() as client:
        try:
            outcome = render.run_render_drill(client, _postgres_id(inv), inv.target, settings,
                                              drill_settings(inv.settings), index_settings(inv.settings).expected,
                                              progress=inv.progress, cancel=inv.cancel)
        except DrillInterrupted as stopped:
            _record(inv, stopped.result)
            raise
    drill_id = _record(inv, outcome.result)
    report = outcome.result.to_report(title=f"Render restore drill {drill_id} of {inv.target_name}")
    report.data |= {"drill_id": drill_id}
    return _with_alarm(report, outcome.alarm)


def _with_alarm(report: Report, alarm: str | None) -> Report:
    """A billed instance left behind: said first, loudly, and logged."""
    if alarm:
        log.error("%s", alarm)
        report.notes.insert(0, Note(Level.FAILED, alarm))
        report.sections.insert(0, Section("ALARM: a billed instance is left", f":rotating_light: {alarm}"))
        report.data["alarm"] = alarm
    return report


@command("render backup", "a backup dumped from a Render point-in-time copy of the target, made for it and deleted "
                          "after (no load on production; billed while it exists); also `backup --from "
                          "render-recovery`", long_running=True, lock="backup", who="approvers",
         opened_by=recovery_copy_for_anyone)
def render_backup(inv: Invocation) -> Report:
    settings = render_settings(inv.settings)
    with settings.client() as client:
        outcome = render.backup_from_recovery_copy(
            client, _postgres_id(inv), inv.target, settings, backup_settings(inv.settings), backup_catalog(inv),
            requested_by=inv.actor, scheduled=inv.actor == "scheduler", progress=inv.progress, cancel=inv.cancel)
    return _with_alarm(outcome.to_report(), outcome.alarm)


@command("render export-drill", "restore drill of Render's newest logical export in a throwaway local instance",
         long_running=True, lock="drill", cancellable=True)
def render_export_drill(inv: Invocation) -> Report:
    from handlers.backup.storage import S3Store  # boto3
    from handlers.drill.runner import DrillInterrupted  # psycopg, psutil

    _state(inv)
    settings = render_settings(inv.settings)
    keep = None
    if settings.mirror_exports:
        storage = backup_settings(inv.settings)

        def keep(path, export):
            if storage.storage == "s3":
                store = S3Store(storage.s3)

                def upload(local, filename):
                    key = store.key_for(inv.target_name, filename)
                    store.upload(local, key)
                    return store.url(key)

                return render.mirror_export(path, export, inv.target_name, storage.dir, upload)
            return render.mirror_export(path, export, inv.target_name, storage.dir)
    with settings.client() as client:
        try:
            result = render.run_export_drill(client, _postgres_id(inv), inv.target, settings,
                                             drill_settings(inv.settings), index_settings(inv.settings).expected,
                                             progress=inv.progress, cancel=inv.cancel, keep=keep)
        except DrillInterrupted as stopped:
            _record(inv, stopped.result)
            raise
    drill_id = _record(inv, result)
    report = result.to_report(title=f"Render export drill {drill_id} of {inv.target_name}")
    report.data |= {"drill_id": drill_id}
    return report


@command("render delete-instance", "delete a Render instance a point-in-time restore made (dbops-restore-*): "
                                   "never production nor any other", Arg("name", "its name or dpg-... id",
                                                                          required=True),
         takes_target=False, who="approvers")
def render_delete_instance(inv: Invocation) -> Report:
    from handlers.render.pitr import delete_restore_instance

    settings = render_settings(inv.settings)
    protected = set()
    for name in inv.settings.targets:
        try:
            protected.add(render.postgres_id_for(name, inv.settings.target_options.get(name), DEFAULT_TARGET))
        except ConfigError:
            pass  # a target without a Render id: nothing of it to protect here
    with settings.client() as client:
        return delete_restore_instance(client, inv.args.name, settings, protected)


def _restores_slot(svc: Bot, now) -> str | None:
    settings = render_settings(svc.settings)
    return now.strftime("%Y-%m-%dT%H") if settings.api_key and settings.restore_keep_hours else None


def expire_restores(svc: Bot) -> list[str]:
    """Point-in-time restore instances past [render] restore_keep_hours: deleted (they are billed)."""
    from datetime import datetime, timezone

    from handlers.render.pitr import expired_restores

    settings = render_settings(svc.settings)
    if not settings.api_key or not settings.restore_keep_hours:
        return []
    with settings.client() as client:
        said, alarms = expired_restores(client, settings, datetime.now(timezone.utc))
    lines = said + [f":rotating_light: {alarm}" for alarm in alarms]
    if lines and svc.settings.channel:
        svc.notifier.post(svc.settings.channel, "\n".join(lines))
    return []


# -- /db status and the digest, settings, start-up -------------------------------------------
def render_line(inv: Invocation) -> tuple[str, bool, str]:
    settings = render_settings(inv.settings)
    if not settings.api_key:
        return "Render", True, "not checked: RENDER_API_KEY is not set"
    try:
        postgres_id = _postgres_id(inv)
    except ConfigError:
        return "Render", True, f"not checked: `{inv.target_name}` has no render_postgres_id"
    try:
        with settings.client() as client:
            found = render.check_status(client, postgres_id, settings)
    except DbopsError as exc:
        return "Render", False, str(exc)
    return "Render", found.ok, found.line


def cleanup_at_startup(svc: Bot) -> list[str]:
    """Delete the recovery copies (dbops-drill-*, dbops-backup-*) a crashed drill or backup left (billed
    until gone); never while a Render drill or a backup runs on another replica."""
    settings = render_settings(svc.settings)
    if not settings.api_key:
        return []
    if any(job.command in ("render drill", "backup") for job in svc.store.running_jobs()):
        return []
    with settings.client() as client:
        said, alarms = render.cleanup_leftover_instances(client, settings.delete_retries)
    return said + [f":rotating_light: {alarm}" for alarm in alarms]



AREA = Area(
    "render",
    commands=(render_status, render_drill, render_export_drill, render_backup, render_delete_instance),
    settings=(("render", render_settings),),
    status_lines=(StatusLine(render_line),),
    startup=(cleanup_at_startup,),
    schedules=(Schedule("render-restores", _restores_slot, expire_restores,
                        lambda settings, now: "Point-in-time restore instances: deleted after [render] "
                                              f"restore_keep_hours = {render_settings(settings).restore_keep_hours}"
                                              " (0: never)."),),
)
