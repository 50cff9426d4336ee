"""A Render point-in-time recovery into a new, billed instance (a "recovery copy"): asked for, waited
for, connected to, and deleted whatever happens; and the removal of copies a killed process left.

The Render drill restores one to verify it; a backup from a recovery copy dumps one instead of
production. Each names its copies with its own prefix, so a leftover is recognised at the next
start. Render restores take 10 to 30 minutes; the wait polls with a growing interval, says how
long it has waited, and gives up at [render] wait_limit_minutes. Every wait goes through `sleep`
and `clock`.
"""
from __future__ import annotations

import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from .. import fmt
from ..errors import Cancelled, DbopsError
from ..report import Progress, ProgressFn
from ..target import dsn_secrets
from .client import RenderClient, parse_time
from .errors import RenderError
from .settings import RenderSettings

DRILL_PREFIX = "dbops-drill-"
BACKUP_PREFIX = "dbops-backup-"
COPY_PREFIXES = (DRILL_PREFIX, BACKUP_PREFIX)  # every name dbops gives a recovery copy
_FAILED_STATES = {"recovery_failed", "unavailable", "suspended"}


class RecoveryFailed(RenderError):
    """The recovery copy could not be made or reached; the message says why (secret-free)."""


class InstanceNotDeleted(RenderError):
    """DELETE kept failing: a billed instance is left. The message is the alarm."""


def copy_name(prefix: str, now: datetime) -> str:
    return f"{prefix}{now.astimezone(timezone.utc).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def delete_with_retries(client: RenderClient, instance: dict[str, Any], retries: int,
                        sleep: Callable[[float], Any]) -> bool:
    """Delete, retrying with backoff; True when deleted now, False when already gone. Raises
    InstanceNotDeleted (the alarm, naming the instance and its dashboard URL) in the end."""
    last = ""
    for attempt in range(retries + 1):
        try:
            return client.delete_postgres(instance["id"])
        except DbopsError as exc:
            last = str(exc)
        if attempt < retries:
            sleep(min(60.0, 5.0 * 2 ** attempt))
    raise InstanceNotDeleted(
        f"ALARM: the Render instance {instance.get('name', '?')} ({instance['id']}) could not be deleted after "
        f"{retries + 1} tries (last: {last}). It is billed until it is gone: delete it now in the Render "
        f"Dashboard: {instance.get('dashboardUrl') or 'https://dashboard.render.com'}")


def cleanup_leftover_instances(client: RenderClient, retries: int = 6, sleep: Callable[[float], Any] = time.sleep,
                               prefixes: tuple[str, ...] = COPY_PREFIXES) -> tuple[list[str], list[str]]:
    """Recovery copies (dbops-drill-*, dbops-backup-*) that a crashed or killed process left: deleted.
    Returns (lines for the channel, alarms for the ones that would not go)."""
    said, alarms = [], []
    for found in client.list_postgres():
        name = str(found.get("name", ""))
        if not name.startswith(prefixes):
            continue
        what = "drill" if name.startswith(DRILL_PREFIX) else "recovery copy"
        try:
            delete_with_retries(client, found, retries, sleep)
            said.append(f"deleted a leftover Render {what} instance {found['name']} ({found['id']}, plan "
                        f"{found.get('plan', '?')}, created {found.get('createdAt', '?')})")
        except InstanceNotDeleted as exc:
            alarms.append(str(exc))
    return said, alarms


def monthly_price(settings: RenderSettings, plan: str | None, disk_gb: float | None) -> float | None:
    """US dollars a month of an instance of `plan` with `disk_gb` ([render] plan_prices_usd); None: not known."""
    price = settings.plan_prices_usd.get(str(plan or "").lower())
    return None if price is None else price + (disk_gb or 0) * settings.disk_price_usd_per_gb


def cost_line(settings: RenderSettings, plan: str | None, disk_gb: float | None, existed_s: float | None) -> str:
    """"plan basic_1gb and 15 GB for 23 min: about $0.01 ($23.50/month)" ([render] plan_prices_usd)."""
    when = fmt.duration(existed_s) if existed_s is not None else "an unknown time"
    disk = f" and {disk_gb:g} GB" if disk_gb else ""
    monthly = monthly_price(settings, plan, disk_gb)
    if monthly is None:
        return f"plan {plan or '?'}{disk} for {when} (its price is not known: set [render] plan_prices_usd)"
    cost = monthly * (existed_s or 0.0) / (30 * 86400)
    return f"plan {plan}{disk} for {when}: about ${max(cost, 0.01):,.2f} (${monthly:,.2f}/month)"


class RecoveryCopy:
    """One recovery copy of `postgres_id`, from `restore_time()` to `delete()`."""

    def __init__(self, client: RenderClient, postgres_id: str, settings: RenderSettings, prefix: str,
                 progress: ProgressFn, cancel: threading.Event, sleep: Callable[[float], Any] | None,
                 clock: Callable[[], float], now: Callable[[], datetime]) -> None:
        self.client, self.postgres_id, self.settings, self.prefix = client, postgres_id, settings, prefix
        self.progress, self.cancel, self.clock, self.now = progress, cancel, clock, now
        # Waiting for the restore stops at once on cancel; waiting between DELETE tries never does.
        self.sleep = sleep or (lambda s: cancel.wait(s))
        self.delete_sleep = sleep or time.sleep
        self.secrets: list[str] = list(client.secrets)
        self.source: dict[str, Any] = {}  # the instance restored from
        self.recovery: dict[str, Any] = {}  # its recovery info
        self.created: dict[str, Any] | None = None  # the recovery instance, once Render has it
        self.created_at: float | None = None
        self.existed_s: float | None = None  # how long it was billed, once deleted
        self.waited_s = 0.0
        self.polls = 0

    @property
    def plan(self) -> str:
        return str((self.created or {}).get("plan") or self.settings.drill_plan or self.source.get("plan") or "?")

    def window(self) -> tuple[datetime | None, datetime]:
        """(the earliest moment Render can restore to, the latest: [render] min_restore_age_minutes ago),
        reading the source and its recovery info; RecoveryFailed when Render offers no recovery now."""
        self.source = self.client.get_postgres(self.postgres_id)
        self.recovery = self.client.recovery_info(self.postgres_id)
        status = self.recovery.get("recoveryStatus")
        if status != "AVAILABLE":
            raise RecoveryFailed(f"Render says point-in-time recovery of {self.source.get('name', self.postgres_id)} "
                                 f"is {status}: nothing to restore from (`render status` says more)")
        return (parse_time(self.recovery.get("startsAt")),
                self.now() - timedelta(minutes=self.settings.min_restore_age_minutes))

    def restore_time(self) -> datetime:
        """The moment to restore to: [render] restore_minutes_ago, within the recovery window."""
        starts, latest = self.window()
        restore_time = self.now() - timedelta(minutes=self.settings.restore_minutes_ago)
        if starts is not None and restore_time < starts:
            restore_time = starts + timedelta(seconds=60)  # the earliest Render offers, with a margin
        if restore_time > latest:
            raise RecoveryFailed(f"point-in-time recovery reaches back only to {self.recovery.get('startsAt')}: a "
                                 f"restore needs a moment at least {self.settings.min_restore_age_minutes} minutes "
                                 "ago; try again later")
        return restore_time.replace(microsecond=0)

    def start(self, restore_time: datetime) -> dict[str, Any]:
        """Asks Render for the new instance; the answer lost, it is looked for by name so it is deleted."""
        name = copy_name(self.prefix, self.now())
        try:
            self.created = self.client.start_recovery(self.postgres_id, restore_time, name, self.settings.drill_plan)
        except DbopsError:
            try:
                found = self.client.list_postgres([name])
                self.created = next((p for p in found if p.get("name") == name), None)
            except DbopsError:
                self.created = {"id": None, "name": name}  # looked for again at the next start-up
            raise
        finally:
            if self.created is not None:
                self.created_at = self.clock()
        return self.created

    def wait_available(self) -> None:
        assert self.created is not None
        limit = self.settings.wait_limit_minutes * 60
        started = self.clock()
        interval = self.settings.poll_first_s
        while True:
            if self.cancel.is_set():
                raise Cancelled("cancelled while Render restored the recovery copy")
            found = self.client.get_postgres(self.created["id"])
            self.polls += 1
            status = found.get("status")
            self.waited_s = self.clock() - started
            if status == "available":
                self.created = {**self.created, **found}
                return
            if status in _FAILED_STATES:
                raise RecoveryFailed(f"Render's recovery instance became {status} after {fmt.duration(self.waited_s)}")
            if self.waited_s >= limit:
                raise RecoveryFailed(f"the recovery instance was still {status} after {fmt.duration(self.waited_s)} "
                                     f"([render] wait_limit_minutes = {self.settings.wait_limit_minutes}): giving up; "
                                     "it is deleted")
            self.progress(Progress("restore", min(0.95, self.waited_s / limit),
                                   f"Render is restoring (status {status}, {fmt.duration(self.waited_s)} so far; "
                                   "Render restores take 10 to 30 minutes)"))
            self.sleep(max(0.0, min(interval, limit - self.waited_s)))
            interval = min(self.settings.poll_max_s, interval * 1.5)

    def connection(self) -> str:
        """The copy's connection string ([render] connection), a secret from now on."""
        assert self.created is not None
        info = self.client.connection_info(self.created["id"])
        self.secrets += info.secrets()
        for text in (info.internal, info.external):
            if text:
                self.secrets += dsn_secrets(text)
        dsn = info.internal if self.settings.connection == "internal" else info.external
        if not dsn:
            raise RecoveryFailed(f"Render gave no {self.settings.connection} connection string for the recovery "
                                 "instance")
        return dsn

    def delete(self) -> bool:
        """Gone, whatever happened: False when there was nothing to delete. Raises InstanceNotDeleted."""
        if self.created is None:
            return False
        if not self.created.get("id"):
            raise RecoveryFailed(f"Render's answer to the recovery request was lost: the instance "
                                 f"{self.created.get('name', '?')} may exist; the next start-up looks for it by name "
                                 "and deletes it")
        delete_with_retries(self.client, self.created, self.settings.delete_retries, self.delete_sleep)
        self.existed_s = round(self.clock() - self.created_at, 1) if self.created_at is not None else None
        return True

    def cost(self) -> str:
        return cost_line(self.settings, self.plan, (self.created or {}).get("diskSizeGB"), self.existed_s)
