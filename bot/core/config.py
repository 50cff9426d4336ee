"""Settings: environment variables (a `.env` file is read too) plus an optional `dbops.toml`.

Every problem is reported as one `ConfigError` that names the setting and what
to put there. Connection strings and tokens are never echoed back.
"""
from __future__ import annotations

import difflib
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

from handlers import config_values as cv
from handlers import environment
from handlers.config_values import SettingError
from handlers.errors import ConfigError, UsageError
from handlers.target import Target, dsn_secrets

from .approvals.seal import approval_key

DEFAULT_TARGET = "prod"
RESTORE_TARGET = "restore-target"  # [targets.NAME] role: a destination for `restore --into` only
SLACK_API_DEFAULT = "https://slack.com/api/"

_HINTS = {
    "DATABASE_URL": "the production database's connection string, e.g. postgresql://user:password@host:5432/asidenote "
                    "(on Render: the database's External or Internal Database URL)",
    "SLACK_BOT_TOKEN": "the Bot User OAuth Token from your Slack app's OAuth & Permissions page (starts with xoxb-)",
    "SLACK_SIGNING_SECRET": "the Signing Secret from your Slack app's Basic Information page",
    "SLACK_APP_TOKEN": "an app-level token with the connections:write scope (starts with xapp-), only for Socket Mode",
    "DBOPS_CHANNEL": "the Slack channel ID for digests and approval requests, e.g. C0123456789",
}


@dataclass
class Settings:
    targets: dict[str, Target]
    state_url: str | None
    state_url_env: str = "DBOPS_STATE_URL"  # the variable state_url came from (DATABASE_URL when it is unset)
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_api_url: str = SLACK_API_DEFAULT
    channel: str | None = None
    approvers: frozenset[str] = frozenset()
    approver_groups: frozenset[str] = frozenset()
    allowed_channels: frozenset[str] = frozenset()
    allowed_users: frozenset[str] = frozenset()
    backup_dir: Path = Path("backups")
    port: int = 3000
    sections: dict[str, Any] = field(default_factory=dict)  # dbops.toml sections for the handlers
    target_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # [targets.NAME] beyond its URL
    config_path: Path | None = None
    serving: bool = False  # the bot, serving Slack (load_settings(require_slack=True)), not a terminal or CI
    # Each section read into its object once (`read_once`), not again at every use or scheduler tick.
    _read: dict[Callable, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def target(self, name: str | None = None) -> Target:
        name = name or DEFAULT_TARGET
        if name in self.targets:
            return self.targets[name]
        if not self.targets:
            raise ConfigError(f"DATABASE_URL is not set: put {_HINTS['DATABASE_URL']} in the environment or .env")
        close = difflib.get_close_matches(name, list(self.targets), n=1)
        hint = f"; did you mean `{close[0]}`?" if close else f"; known targets: {', '.join(sorted(self.targets))}"
        raise UsageError(f"unknown target `{name}`{hint}")

    def is_restore_target(self, name: str) -> bool:
        return self.target_options.get(name, {}).get("role") == RESTORE_TARGET

    @property
    def watched_targets(self) -> list[str]:
        """The targets that are backed up, drilled and watched (status, schedules, the digest); a
        restore target is only restored into, so none of that is expected of it."""
        return [name for name in self.targets if not self.is_restore_target(name)]

    def section(self, name: str) -> dict[str, Any]:
        value = self.sections.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"[{name}] in {self.config_path} must be a table of settings")
        return value

    def secrets(self) -> list[str]:
        """Every configured value that must never be shown."""
        found: list[str] = []
        for target in self.targets.values():
            found += dsn_secrets(target.dsn)
        if self.state_url:
            found += dsn_secrets(self.state_url)
        found += [s for s in (self.slack_bot_token, self.slack_signing_secret, self.slack_app_token) if s]
        return found + environment.secret_values()


T = TypeVar("T")


def read_once(parse: Callable[[Settings], T]) -> Callable[[Settings], T]:
    """Declares a section's reader: `parse(settings)` runs once for each Settings (the bot's lives as
    long as the bot), every later call gets the same object, which is shared: never change it."""
    @functools.wraps(parse)
    def read(settings: Settings) -> T:
        if parse not in settings._read:
            settings._read[parse] = parse(settings)
        return settings._read[parse]

    return read


TOP_LEVEL_SECTIONS = {"targets", "slack"}  # sections this module reads itself


def _group_ids(raw: Any) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(g, str) and g.startswith("S") for g in raw):
        raise ValueError("")
    return raw


SLACK = (
    cv.custom("approver_groups", [], _group_ids, "a list of user group IDs (S...)",
              "user group IDs (S...) whose members may approve, besides DBOPS_APPROVERS"),
    cv.flag("allow_everyone", False, "with DBOPS_ALLOWED_CHANNELS and DBOPS_ALLOWED_USERS both empty the bot "
                                     "refuses to start, unless this is true (anyone, anywhere may run commands)"),
)
# A target's connection string is a secret: dbops.toml names the variable that holds it.
TARGET = (
    cv.env_name("url_env", None, "the environment variable holding its connection string", required=True),
    cv.nonempty("render_postgres_id", None, "its Render Postgres id (dpg-...), for `render status` / `render drill`",
                allowed="a Render Postgres id like \"dpg-...\"", example="dpg-...", commented=True),
    cv.choice("role", "database", ("database", RESTORE_TARGET),
              "\"database\": backed up, drilled and watched; \"restore-target\": only restored into (`restore "
              "--into`): no backups, drills or digest expected of it", commented=True),
)

# (section, check): the check parses that section of dbops.toml and raises ConfigError naming the
# key, so a bad value stops the bot or the command before anything runs (`Registry.settings_checks`).
SettingsChecks = Iterable[tuple[str, Callable[[Settings], Any]]]


def validate_settings(settings: Settings, checks: SettingsChecks) -> None:
    """Every setting of every section, checked at once (start-up of the bot, and every command)."""
    checks = list(checks)
    known = TOP_LEVEL_SECTIONS | {name.split(".")[0] for name, _ in checks}
    where = settings.config_path or "dbops.toml"
    for name in settings.sections:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean [{close[0]}]?" if close else f"; known sections: {', '.join(sorted(known))}"
            raise ConfigError(f"[{name}] in {where} is not a section dbops knows{hint}")
    for name, check in checks:
        try:
            check(settings)
        except ConfigError as exc:
            text = _with_value(exc)
            raise ConfigError(text if str(where) in text else f"{text} (in [{name}] of {where})") from None


def _with_value(exc: ConfigError) -> str:
    """`indexes.window_days must be ...` becomes `indexes.window_days = "thirty": must be ...`; the value
    is shown only where the setting allows it (never for an unknown key: it may hold a pasted URL)."""
    text = str(exc)
    if not isinstance(exc, SettingError) or exc.value is None or isinstance(exc.value, (dict, list)) \
            or not text.startswith(exc.key):
        return text
    shown = json.dumps(exc.value) if isinstance(exc.value, str) else repr(exc.value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{exc.key} = {shown}: {text[len(exc.key):].strip(' :')}"


def _ids(raw: str | None, setting: str, prefixes: tuple[str, ...]) -> frozenset[str]:
    if not raw:
        return frozenset()
    ids = [part.strip() for part in raw.split(",") if part.strip()]
    for value in ids:
        if not value.isalnum() or not value.startswith(prefixes):
            raise ConfigError(
                f"{setting} has {value!r}, which is not a Slack ID: give comma-separated IDs "
                f"starting with {' or '.join(prefixes)} (e.g. {prefixes[0]}0123456789)"
            )
    return frozenset(ids)


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib  # here, not at the top: `dbops --help` reads no settings

    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path} (DBOPS_CONFIG): {exc.strerror}") from None


def load_settings(env: Mapping[str, str] | None = None, *, require_slack: bool = False,
                  read_dotenv: bool = True, checks: SettingsChecks | None = None) -> Settings:
    """The settings; with `checks` (the registry's), every section of dbops.toml is checked too."""
    dotenv_path = os.environ.get("DBOPS_DOTENV", ".env")
    if read_dotenv and env is None and os.path.isfile(dotenv_path):  # python-dotenv is slow to import: only for a file
        from dotenv import load_dotenv

        load_dotenv(dotenv_path, override=False)
    env = os.environ if env is None else env

    config_path = Path(env.get("DBOPS_CONFIG", "dbops.toml"))
    if "DBOPS_CONFIG" in env and not config_path.exists():
        raise ConfigError(f"DBOPS_CONFIG points at {config_path}, which does not exist: "
                          "give the path of your dbops.toml, or unset it")
    doc = _read_toml(config_path) if config_path.exists() else {}

    targets: dict[str, Target] = {}
    target_options: dict[str, dict[str, Any]] = {}
    target_vars: list[str] = []  # the variables holding the configured targets' connection strings
    if env.get("DATABASE_URL"):
        targets[DEFAULT_TARGET] = Target(DEFAULT_TARGET, env["DATABASE_URL"])
    raw_targets = doc.get("targets") or {}
    if not isinstance(raw_targets, dict):
        raise ConfigError(f"targets in {config_path} must be tables, one per target: [targets.staging] "
                          "with url_env = \"NAME_OF_ENV_VAR\"")
    for name, spec in raw_targets.items():
        try:
            options = cv.read(f"targets.{name}", TARGET, spec)
        except ConfigError as exc:
            raise ConfigError(f"{_with_value(exc)} (in [targets.{name}] of {config_path})") from None
        url = env.get(options["url_env"])
        if not url:
            raise ConfigError(f"{options['url_env']} is not set: put the connection string of target "
                              f"`{name}` there ([targets.{name}].url_env in {config_path})")
        targets[name] = Target(name, url)
        target_vars.append(options["url_env"])
        target_options[name] = {k: v for k, v in options.items() if k != "url_env"}

    # Every secret, before anything uses one, must be one that can be kept out of messages.
    connections = {var.name for var in environment.ENVIRONMENT if var.connection} | set(target_vars)
    for name in sorted({var.name for var in environment.ENVIRONMENT if var.secret} | connections):
        problem = env.get(name) and environment.secret_problem(name, env[name], name in connections)
        if problem:
            raise ConfigError(problem)
    approval_key(env)  # a key too short to seal with is refused here, before anything is sealed

    if require_slack:
        for key in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
            if not env.get(key):
                raise ConfigError(f"{key} is not set: put {_HINTS[key]} in the environment or .env")
        if not env["SLACK_BOT_TOKEN"].startswith("xoxb-"):
            raise ConfigError(f"SLACK_BOT_TOKEN does not look like a bot token: use {_HINTS['SLACK_BOT_TOKEN']}")
        if env.get("SLACK_APP_TOKEN") and not env["SLACK_APP_TOKEN"].startswith("xapp-"):
            raise ConfigError(f"SLACK_APP_TOKEN does not look like an app-level token: use {_HINTS['SLACK_APP_TOKEN']}")
        if not targets:
            raise ConfigError(f"DATABASE_URL is not set: put {_HINTS['DATABASE_URL']} in the environment or .env")

    port_raw = env.get("PORT", "3000")
    if not port_raw.isdigit() or not 0 < int(port_raw) < 65536:
        raise ConfigError(f"PORT is {port_raw!r}: give a TCP port number between 1 and 65535")

    try:
        slack = cv.read("slack", SLACK, doc.get("slack"))
    except ConfigError as exc:
        raise ConfigError(f"{_with_value(exc)} (in [slack] of {config_path})") from None
    groups, allow_everyone = slack["approver_groups"], slack["allow_everyone"]
    # Fail closed: with both lists empty anyone in the workspace, in any channel, could run commands.
    if require_slack and not allow_everyone and not (env.get("DBOPS_ALLOWED_CHANNELS") or "").strip() \
            and not (env.get("DBOPS_ALLOWED_USERS") or "").strip():
        raise ConfigError("DBOPS_ALLOWED_CHANNELS and DBOPS_ALLOWED_USERS are both empty, so anyone in the "
                          "workspace could run dbops commands: set one of them (e.g. DBOPS_ALLOWED_CHANNELS="
                          f"C0123456789), or set allow_everyone = true under [slack] in {config_path}")

    state_url = env.get("DBOPS_STATE_URL") or env.get("DATABASE_URL")
    api_url = env.get("SLACK_API_URL") or SLACK_API_DEFAULT
    if not api_url.startswith(("http://", "https://")):
        raise ConfigError(f"SLACK_API_URL must be an http(s) URL (default {SLACK_API_DEFAULT})")

    found = Settings(
        targets=targets,
        state_url=state_url,
        state_url_env="DBOPS_STATE_URL" if env.get("DBOPS_STATE_URL") else "DATABASE_URL",
        slack_bot_token=env.get("SLACK_BOT_TOKEN"),
        slack_signing_secret=env.get("SLACK_SIGNING_SECRET"),
        slack_app_token=env.get("SLACK_APP_TOKEN"),
        slack_api_url=api_url if api_url.endswith("/") else api_url + "/",
        channel=env.get("DBOPS_CHANNEL") or None,
        approvers=_ids(env.get("DBOPS_APPROVERS"), "DBOPS_APPROVERS", ("U", "W")),
        approver_groups=frozenset(groups),
        allowed_channels=_ids(env.get("DBOPS_ALLOWED_CHANNELS"), "DBOPS_ALLOWED_CHANNELS", ("C", "G", "D")),
        allowed_users=_ids(env.get("DBOPS_ALLOWED_USERS"), "DBOPS_ALLOWED_USERS", ("U", "W")),
        backup_dir=Path(env.get("DBOPS_BACKUP_DIR", "backups")),
        port=int(port_raw),
        sections={k: v for k, v in doc.items() if k not in ("targets",)},
        config_path=config_path,
        target_options=target_options,
        serving=require_slack,
    )
    if checks is not None:
        validate_settings(found, checks)
    return found


def prepare_folders(settings: Settings | None = None, env: Mapping[str, str] | None = None) -> list[Path]:
    """Creates, at start, the folders the bot writes to: TMPDIR (when it is missing Python's tempfile
    silently falls back to /tmp, on Render the small root disk) and, given the settings, the backup
    folder. Returns them; a folder that cannot be made is a ConfigError naming its variable."""
    import tempfile

    env = os.environ if env is None else env
    wanted: list[tuple[str, Path]] = []
    if env.get("TMPDIR"):
        wanted.append(("TMPDIR", Path(env["TMPDIR"])))
    if settings is not None:
        raw = settings.section("backup").get("dir")
        wanted.append(("backup.dir in dbops.toml", Path(raw)) if isinstance(raw, str) and raw
                      else ("DBOPS_BACKUP_DIR", settings.backup_dir))
    for name, folder in wanted:
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(f"{name} is {folder}, which cannot be created ({exc.strerror}): point it at a "
                              "writable folder (on Render: under the disk's mountPath, /var/dbops)") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"{name} is {folder}, which is not writable: point it at a writable folder")
    tempfile.tempdir = None  # looked up again: a TMPDIR made just now is used from here on
    return [folder for _, folder in wanted]


# -- the documentation written from the declarations -------------------------------------------

EXAMPLE_HEADING = """dbops.example.toml: every setting, commented. Copy what you need into dbops.toml
(path from DBOPS_CONFIG, default ./dbops.toml). Secrets never go here: connection
strings, tokens and keys stay in the environment (see .env.example).
Written by `python -m bot.core.config --write-docs` from the settings' declarations: edit those."""
# The README's generated parts: the markers around each, and what the table is made from.
README_TABLES = (("<!-- settings:start -->", "<!-- settings:end -->", "settings"),
                 ("<!-- environment:start -->", "<!-- environment:end -->", "environment variables"))


def documented_sections() -> list[cv.Section]:
    """Every section of dbops.toml, in the order the example shows them."""
    from handlers.backup.settings import BACKUP
    from handlers.drill.settings import DRILL
    from handlers.indexes.settings import DIGEST, INDEXES
    from handlers.migrations.settings import APPLY, CHECK, REHEARSAL
    from handlers.postgres.settings import POSTGRES
    from handlers.readonly.settings import READONLY
    from handlers.render.settings import RENDER
    from handlers.sizeplan.settings import SIZEPLAN

    from .approvals.settings import APPROVALS

    return [
        cv.Section("targets.NAME", "targets: databases besides `prod` (which is DATABASE_URL)", TARGET, examples={
            "staging": {"url_env": "STAGING_DATABASE_URL"},
            "recovery": {"url_env": "RECOVERY_DATABASE_URL", "role": RESTORE_TARGET}}),
        cv.Section("slack", "Slack", SLACK),
        cv.Section("approvals", "approval by reaction", APPROVALS),
        cv.Section("identities", "who is who: terminal logins and CI actors ($GITHUB_ACTOR) -> Slack user IDs",
                   note="A request filed with `dbops migrate request` is recorded as cli:<login>. Mapped, its\n"
                        "requester cannot approve it in Slack; unmapped, it is marked unverified and needs one\n"
                        "approval more.",
                   body='# alice = "U0123456789"\n# "octocat" = "U0987654321"'),
        cv.Section("backup", "backups", BACKUP),
        cv.Section("drill", "restore drills", DRILL),
        cv.Section("indexes", "index review", INDEXES,
                   note="The expected indexes of the asidenote schema are in dbops.toml ([[indexes.expected]])."),
        cv.Section("digest", "the daily digest", DIGEST),
        cv.Section("migrate.rehearsal", "migrations: the rehearsal on a throwaway copy", REHEARSAL),
        cv.Section("migrate.apply", "migrations: applying an approved migration", APPLY),
        cv.Section("migrate.check", "migrations: the safety check", CHECK),
        cv.Section("render", "Render's own backups (RENDER_API_KEY, RENDER_POSTGRES_ID in the environment)", RENDER),
        cv.Section("readonly", "read-only roles for analytics", READONLY),
        cv.Section("postgres", "PostgreSQL majors for copies (drills, rehearsals, restores run on the database's "
                               "major)", POSTGRES),
        cv.Section("sizeplan", "the size plan: the limits its dates are projected against", SIZEPLAN),
    ]


def written_docs(root: Path) -> dict[Path, str]:
    """What dbops.example.toml, .env.example and README.md hold when they are current."""
    sections = documented_sections()
    readme = root / "README.md"
    text = readme.read_text()
    tables = {"settings": cv.markdown_table(sections), "environment variables": environment.markdown_table()}
    for start, end, what in README_TABLES:
        if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
            raise ConfigError(f"{readme} needs one {start} ... {end} pair of markers for the {what} table")
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1]
        text = f"{head}{start}\n{tables[what]}{end}{tail}"
    return {root / "dbops.example.toml": cv.example_toml(sections, EXAMPLE_HEADING),
            root / ".env.example": environment.env_example(), readme: text}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bot.core.config",
                                     description="write dbops.example.toml, .env.example and the README's tables "
                                                 "of settings and environment variables from their declarations")
    parser.add_argument("--write-docs", action="store_true", help="rewrite the files that are not current")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    args = parser.parse_args(argv)
    stale = [path for path, text in written_docs(args.root).items() if path.read_text() != text]
    if args.write_docs:
        for path, text in written_docs(args.root).items():
            if path in stale:
                path.write_text(text)
                print(f"wrote {path}")
        return 0
    for path in stale:
        print(f"{path} is not current: run python -m bot.core.config --write-docs")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
