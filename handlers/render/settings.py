"""`[render]` in dbops.toml, plus RENDER_API_KEY / RENDER_API_URL / RENDER_POSTGRES_ID from the environment.

The recovery window each workspace plan gives is a table here because Render documents it, not
the API: 3 days on Hobby workspaces, 7 on Professional and higher, none on the Free instance type.
`[render.recovery_window_days]` overrides it when Render changes its plans.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from .. import config_values as cv
from ..errors import ConfigError

# Here rather than in client.py, which imports httpx: every command checks [render] at start.
DEFAULT_API_URL = "https://api.render.com/v1"
DEFAULT_WINDOW_DAYS = {"hobby": 3, "professional": 7, "organization": 7, "enterprise": 7}
NO_BACKUP_INSTANCE_PLANS = frozenset({"free"})  # the Free instance type has no backups at all
EXPORT_KEEP_DAYS = 7  # Render deletes an export after this long
# Render's list prices of Postgres instance types, US dollars a month (render.com/pricing, 2025), and
# of their storage per GB and month: what the report of a billed recovery copy estimates its cost with.
DEFAULT_PLAN_PRICES_USD = {"basic_256mb": 6, "basic_1gb": 19, "basic_4gb": 75, "pro_4gb": 55, "pro_8gb": 100,
                           "pro_16gb": 200, "pro_32gb": 400, "pro_64gb": 800, "pro_128gb": 1600}
DEFAULT_DISK_PRICE_USD_PER_GB = 0.30


def _window_days(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in raw.values()):
        raise ValueError("")
    return {**DEFAULT_WINDOW_DAYS, **{str(k).lower(): v for k, v in raw.items()}}


def _prices(raw: Any) -> dict[str, float]:
    if not isinstance(raw, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in raw.values()):
        raise ValueError("")
    return {**DEFAULT_PLAN_PRICES_USD, **{str(k).lower(): float(v) for k, v in raw.items()}}


def _plan(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError("")
    return raw.lower()  # checked against recovery_window_days, which may name more plans


RENDER = (
    cv.custom("workspace_plan", "hobby", _plan, f"one of {', '.join(sorted(DEFAULT_WINDOW_DAYS))}",
              "your workspace's plan (Workspace Settings > Billing): hobby has 3 days of point-in-time "
              "recovery, professional and higher 7"),
    cv.custom("recovery_window_days", None, _window_days,
              "a table of workspace plan = days, e.g. { hobby = 3, professional = 7 }",
              "overrides the documented recovery window of a plan", example={"hobby": 3, "professional": 7},
              commented=True),
    cv.number("window_slack_hours", 1.0, "Render's earliest restorable time moves continuously: this much margin"),
    cv.flag("exports_expected", False, "true: warn when no logical export is newer than export_max_age_days"),
    cv.whole("export_max_age_days", 7, "the newest export may be this old (with exports_expected)", low=1),
    cv.whole("export_max_bytes", 20 * 1024 ** 3, "the largest export drilled: downloaded, and again unpacked", low=1),
    cv.whole("export_max_files", 100_000, "the most files an export may unpack to", low=1),
    cv.flag("mirror_exports", False, "keep a copy of each drilled export in the bot's backup storage"),
    cv.whole("restore_minutes_ago", 15, "`render drill` restores to this long ago", low=1),
    cv.whole("min_restore_age_minutes", 10, "Render cannot restore to the last few minutes"),
    cv.whole("wait_limit_minutes", 45, "a recovery instance not available by then is deleted, the drill failed",
             low=1),
    cv.number("poll_first_s", 15.0, "first wait between status polls"),
    cv.number("poll_max_s", 60.0, "longest wait between status polls"),
    cv.nonempty("drill_plan", None, "the recovery instance's plan; default: the source's",
                allowed="a Render Postgres plan name, e.g. \"basic_256mb\"", example="basic_256mb", commented=True),
    cv.choice("connection", "external", ("external", "internal"),
              "\"external\" (the bot runs outside Render's region) or \"internal\" (on Render, same region)"),
    cv.whole("delete_retries", 6, "tries to delete a recovery instance before it is reported left over"),
    cv.custom("plan_prices_usd", None, _prices, "a table of plan = US dollars a month, e.g. { basic_1gb = 19 }",
              "overrides Render's list prices, which reports of billed recovery copies estimate their cost with",
              example={"basic_1gb": 19, "pro_4gb": 55}, commented=True),
    cv.number("disk_price_usd_per_gb", DEFAULT_DISK_PRICE_USD_PER_GB, "Render's storage price, a GB a month"),
    cv.whole("restore_keep_hours", 48, "a point-in-time restore's instance (`restore --at`) is deleted by the bot "
                                       "this long after it was made; 0: kept until `render delete-instance`"),
    cv.number("timeout_s", 30.0, "timeout of one API call"),
)


@dataclass
class RenderSettings:
    api_key: str = field(default="", repr=False)
    api_url: str = DEFAULT_API_URL
    workspace_plan: str = "hobby"
    recovery_window_days: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_WINDOW_DAYS))
    window_slack_hours: float = 1.0  # Render's earliest restorable time moves continuously
    exports_expected: bool = False
    export_max_age_days: int = 7
    export_max_bytes: int = 20 * 1024 ** 3  # downloaded archive, and again unpacked
    export_max_files: int = 100_000
    mirror_exports: bool = False
    restore_minutes_ago: int = 15
    min_restore_age_minutes: int = 10  # Render cannot restore to the last few minutes
    wait_limit_minutes: int = 45
    poll_first_s: float = 15.0
    poll_max_s: float = 60.0
    drill_plan: str | None = None  # the recovery instance's plan; default: the source's
    connection: str = "external"  # which connection string of the recovery instance the drill uses
    delete_retries: int = 6
    restore_keep_hours: int = 48  # a point-in-time restore's instance is billed: deleted by the bot after this
    timeout_s: float = 30.0
    plan_prices_usd: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PLAN_PRICES_USD))
    disk_price_usd_per_gb: float = DEFAULT_DISK_PRICE_USD_PER_GB

    @property
    def documented_window_days(self) -> int:
        return self.recovery_window_days.get(self.workspace_plan, 0)

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None, env: Mapping[str, str] | None = None) -> "RenderSettings":
        env = os.environ if env is None else env
        api_url = env.get("RENDER_API_URL") or DEFAULT_API_URL
        if not api_url.startswith(("https://", "http://")):
            raise ConfigError(f"RENDER_API_URL must be an http(s) URL (default {DEFAULT_API_URL})")
        s = cls(api_key=env.get("RENDER_API_KEY", ""), api_url=api_url, **cv.read("render", RENDER, section))
        if s.workspace_plan not in s.recovery_window_days:
            raise cv.SettingError(f"render.workspace_plan must be one of {', '.join(sorted(s.recovery_window_days))} "
                                  "(your Render workspace's plan: Workspace Settings > Billing)",
                                  "render.workspace_plan", s.workspace_plan)
        if s.restore_minutes_ago < s.min_restore_age_minutes:
            raise ConfigError(f"render.restore_minutes_ago ({s.restore_minutes_ago}) must be at least "
                              f"render.min_restore_age_minutes ({s.min_restore_age_minutes})")
        return s

    def client(self, sleep=None):
        from .client import RenderClient, RetryPolicy

        kwargs = {"sleep": sleep} if sleep is not None else {}
        return RenderClient(self.api_key, self.api_url, timeout_s=self.timeout_s, retry=RetryPolicy(), **kwargs)


def postgres_id_for(target_name: str, target_options: Mapping[str, Any] | None, default_target: str,
                    env: Mapping[str, str] | None = None) -> str:
    """The Render instance id of a target: `[targets.NAME] render_postgres_id`, else RENDER_POSTGRES_ID
    for the default target."""
    env = os.environ if env is None else env
    found = (target_options or {}).get("render_postgres_id")
    if not found and target_name == default_target:
        found = env.get("RENDER_POSTGRES_ID")
    if not found:
        raise ConfigError(f"target `{target_name}` has no Render instance id: set render_postgres_id under "
                          f"[targets.{target_name}] in dbops.toml"
                          + (" (or RENDER_POSTGRES_ID)" if target_name == default_target else "")
                          + "; it is the dpg-... id in the instance's Render Dashboard URL")
    return str(found)
