"""`[render]` in dbops.toml, plus RENDER_API_KEY / RENDER_API_URL / RENDER_POSTGRES_ID from the environment.

The recovery window each workspace plan gives is a table here because Render documents it, not
the API: 3 days on Hobby workspaces, 7 on Professional and higher, none on the Free instance type.
`[render.recovery_window_days]` overrides it when Render changes its plans.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from .. import config_values
from ..errors import ConfigError
from .client import DEFAULT_API_URL

DEFAULT_WINDOW_DAYS = {"hobby": 3, "professional": 7, "organization": 7, "enterprise": 7}
NO_BACKUP_INSTANCE_PLANS = frozenset({"free"})  # the Free instance type has no backups at all
EXPORT_KEEP_DAYS = 7  # Render deletes an export after this long


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
    timeout_s: float = 30.0

    @property
    def documented_window_days(self) -> int:
        return self.recovery_window_days.get(self.workspace_plan, 0)

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None, env: Mapping[str, str] | None = None) -> "RenderSettings":
        env = os.environ if env is None else env
        d = dict(section or {})
        s = cls(api_key=env.get("RENDER_API_KEY", ""), api_url=env.get("RENDER_API_URL") or DEFAULT_API_URL)
        if not s.api_url.startswith(("https://", "http://")):
            raise ConfigError(f"RENDER_API_URL must be an http(s) URL (default {DEFAULT_API_URL})")
        known = {"workspace_plan", "recovery_window_days", "window_slack_hours", "exports_expected",
                 "export_max_age_days", "export_max_bytes", "export_max_files", "mirror_exports",
                 "restore_minutes_ago", "min_restore_age_minutes", "wait_limit_minutes", "poll_first_s",
                 "poll_max_s", "drill_plan", "connection", "delete_retries", "timeout_s"}
        config_values.no_unknown(d, "render", known)
        if "recovery_window_days" in d:
            table = d["recovery_window_days"]
            if not isinstance(table, dict) or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in table.values()):
                raise ConfigError("render.recovery_window_days must be a table of workspace plan = days, "
                                  "e.g. { hobby = 3, professional = 7 }")
            s.recovery_window_days = {**s.recovery_window_days, **{str(k).lower(): v for k, v in table.items()}}
        if "workspace_plan" in d:
            plan = str(d["workspace_plan"]).lower()
            if plan not in s.recovery_window_days:
                raise ConfigError(f"render.workspace_plan must be one of {', '.join(sorted(s.recovery_window_days))} "
                                  "(your Render workspace's plan: Workspace Settings > Billing)")
            s.workspace_plan = plan
        s.exports_expected = config_values.flag(d, "render", "exports_expected", s.exports_expected)
        s.mirror_exports = config_values.flag(d, "render", "mirror_exports", s.mirror_exports)
        for key, low in (("export_max_age_days", 1), ("export_max_bytes", 1), ("export_max_files", 1),
                         ("restore_minutes_ago", 1), ("min_restore_age_minutes", 0), ("wait_limit_minutes", 1),
                         ("delete_retries", 0)):
            if key in d:
                value = d[key]
                if isinstance(value, bool) or not isinstance(value, int) or value < low:
                    raise ConfigError(f"render.{key} must be a whole number of at least {low}")
                setattr(s, key, value)
        for key in ("window_slack_hours", "poll_first_s", "poll_max_s", "timeout_s"):
            if key in d:
                value = d[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise ConfigError(f"render.{key} must be a number of at least 0")
                setattr(s, key, float(value))
        if "drill_plan" in d:
            if not isinstance(d["drill_plan"], str) or not d["drill_plan"]:
                raise ConfigError("render.drill_plan must be a Render Postgres plan name, e.g. \"basic_256mb\"")
            s.drill_plan = d["drill_plan"]
        if "connection" in d:
            if d["connection"] not in ("external", "internal"):
                raise ConfigError("render.connection must be \"external\" (the bot runs outside Render's region) "
                                  "or \"internal\" (the bot runs on Render in the same region)")
            s.connection = d["connection"]
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
