"""Every environment variable dbops reads, declared once: the README's table and `.env.example` are
written from this list (`python -m bot.core.config --write-docs`), the secrets to scrub are the ones
marked `secret` (`secret_values`), and tests check that every variable the code reads is here and that
the Render Blueprint (render.yaml) sets each one it should (`not_in_blueprint` says why the others are not)."""
from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from typing import Mapping

from handlers.target import dsn_secrets


@dataclass(frozen=True)
class EnvVar:
    name: str
    help: str
    secret: bool = False  # scrubbed from every message and log line; never goes into dbops.toml
    connection: bool = False  # a connection string: its password alone is scrubbed too
    example: str | None = None  # its line in .env.example; None: the line is there commented out
    read_by: str = ""  # a library that reads it (dbops's own code never names it)
    not_in_blueprint: str = ""  # why render.yaml does not set it; "" when it does (tests/test_blueprint.py)


# Why the Blueprint leaves a variable out, for the ones that only tests or other platforms set.
_TESTS = "tests point it at a fake"
ENVIRONMENT = (
    EnvVar("DATABASE_URL", "the default target, named `prod` (on Render: the database's Internal Database URL)",
           secret=True, connection=True, example="postgresql://asidenote:CHANGE_ME@dpg-xxxx-a:5432/asidenote"),
    EnvVar("DBOPS_STATE_URL", "where the bot keeps its state (schema `dbops`): a small database of its own; "
                              "default `DATABASE_URL` (then status warns: the state dies with production)",
           secret=True, connection=True),
    EnvVar("SLACK_BOT_TOKEN", "the Slack app's Bot User OAuth Token (`xoxb-...`)", secret=True,
           example="xoxb-CHANGE-ME"),
    EnvVar("SLACK_SIGNING_SECRET", "the Slack app's Signing Secret", secret=True, example="CHANGE_ME"),
    EnvVar("SLACK_APP_TOKEN", "optional: an app-level token (`xapp-...`, scope `connections:write`) for Socket Mode",
           secret=True, not_in_blueprint="Socket Mode only; the Blueprint's web service takes Slack over HTTP"),
    EnvVar("SLACK_API_URL", "optional base URL of the Slack Web API (tests point it at a fake)",
           not_in_blueprint=_TESTS),
    EnvVar("DBOPS_CHANNEL", "channel for digests, alerts and approval requests", example="C0123456789"),
    EnvVar("DBOPS_APPROVERS", "Slack user IDs who may approve (user groups: `[slack].approver_groups` in dbops.toml)",
           example="U0123456789,U0987654321"),
    EnvVar("DBOPS_ALLOWED_CHANNELS", "channels where commands may run; with `DBOPS_ALLOWED_USERS` both empty the "
                                     "bot refuses to start unless `[slack] allow_everyone = true`",
           example="C0123456789"),
    EnvVar("DBOPS_ALLOWED_USERS", "users who may run commands (empty: anyone in an allowed channel). Commands that "
                                  "destroy or cost (`backup prune` without `--dry-run`) are for approvers only",
           example="", not_in_blueprint="optional: add it in the Environment tab to name who may run commands"),
    EnvVar("DBOPS_CONFIG", "path of `dbops.toml` (default `./dbops.toml`)",
           not_in_blueprint="the deployed repository's dbops.toml is the default"),
    EnvVar("DBOPS_DOTENV", "the `.env` file read at start (default `./.env`); variables already set win",
           not_in_blueprint="no .env file on Render: the Blueprint sets the environment"),
    EnvVar("DBOPS_BACKUP_DIR", "local backup folder (default `./backups`), created at start", example="./backups"),
    EnvVar("DBOPS_BACKUP_KEY", "optional: base64 of 32 bytes (`openssl rand -base64 32`); backups are encrypted "
                               "at rest (AES-256-GCM) when `backup.encrypt = true`, and their manifests are sealed "
                               "with a key derived from it (a backup planted in the storage is then refused)",
           secret=True),
    EnvVar("DBOPS_APPROVAL_KEY", "optional: 32 characters or more (`openssl rand -base64 32`); the bot seals each "
                                 "approval request it posts and each vote it counts with a key derived from it, so "
                                 "writing the state database is not approving. `migrate gate` needs the same value",
           secret=True),
    EnvVar("DBOPS_S3_ACCESS_KEY_ID", "optional: S3-compatible storage for backups (`backup.storage = \"s3\"`)",
           not_in_blueprint="add it with its secret when backup.storage = \"s3\""),
    EnvVar("DBOPS_S3_SECRET_ACCESS_KEY", "optional: the secret of `DBOPS_S3_ACCESS_KEY_ID`", secret=True,
           not_in_blueprint="add it with its key id when backup.storage = \"s3\""),
    EnvVar("AWS_ACCESS_KEY_ID", "optional: S3 credentials from boto3's usual AWS_* chain, when the DBOPS_S3_* "
                                "pair is not set", read_by="boto3", not_in_blueprint="DBOPS_S3_* instead"),
    EnvVar("AWS_SECRET_ACCESS_KEY", "optional: the secret of `AWS_ACCESS_KEY_ID`", secret=True, read_by="boto3",
           not_in_blueprint="DBOPS_S3_* instead"),
    EnvVar("AWS_SESSION_TOKEN", "optional: AWS session token for temporary S3 credentials", secret=True,
           read_by="boto3", not_in_blueprint="DBOPS_S3_* instead"),
    EnvVar("DBOPS_DRILL_URL", "optional: a scratch server for drills (`drill.instance = \"scratch\"`; another "
                              "variable with `drill.scratch_url_env`)", secret=True, connection=True,
           not_in_blueprint="drills run in a throwaway local instance by default"),
    EnvVar("DBOPS_PG_BIN", "optional: PostgreSQL binaries to use instead of the bundled PostgreSQL 18 for the bot's "
                           "own work (reading archives). One variable per major, `DBOPS_PG_BIN_14` to "
                           "`DBOPS_PG_BIN_18`, names the bin folder copies of a database on that major run from, "
                           "e.g. `DBOPS_PG_BIN_16=/usr/lib/postgresql/16/bin` (Debian's postgresql-16); without it, "
                           "`dbops pg install 16`'s",
           not_in_blueprint="the bundled binaries, and `dbops pg install`'s"),
    EnvVar("DBOPS_PG_DIR", "optional: where `dbops pg install` keeps PostgreSQL majors (default "
                           "`$XDG_CACHE_HOME/dbops/postgres`, or `~/.cache/dbops/postgres`)"),
    EnvVar("XDG_CACHE_HOME", "optional: the user's cache folder (the default `DBOPS_PG_DIR` is inside it)",
           not_in_blueprint="the Blueprint sets DBOPS_PG_DIR itself"),
    EnvVar("RENDER_API_KEY", "optional: Render's API key, for `render status`, `render drill` and "
                             "`restore --from render`", secret=True),
    EnvVar("RENDER_POSTGRES_ID", "optional: the production database's Render id (`dpg-...`, in its Dashboard URL); "
                                 "other targets name theirs with `render_postgres_id`"),
    EnvVar("RENDER_API_URL", "optional: Render's API base URL (default `https://api.render.com/v1`; tests point it "
                             "at a fake)", not_in_blueprint=_TESTS),
    EnvVar("PORT", "HTTP port (default 3000; Render sets it)", example="3000", not_in_blueprint="Render sets it"),
    EnvVar("TMPDIR", "optional: the folder for temporary files (Python's and the PostgreSQL programs'), created at "
                     "start; on Render the Blueprint puts it on the service's disk, not the small root disk"),
    EnvVar("DBOPS_WORKERS", "optional: commands run side by side in one bot process (default 4); work still "
                            "waiting when the bot stops is told it did not run", not_in_blueprint="the default fits"),
    EnvVar("DBOPS_JOB_HEARTBEAT_S", "optional: how often a running job beats (default 10 s); a job is taken for "
                                    "dead only when its lock is free and its heartbeat is 3 beats old",
           not_in_blueprint="the default fits"),
    EnvVar("DBOPS_SCHEDULER_INTERVAL", "optional: seconds between the scheduler's looks at what is due (default 5)",
           not_in_blueprint="the default fits"),
    EnvVar("DBOPS_LOG_LEVEL", "optional: DEBUG, INFO (default), WARNING or ERROR", not_in_blueprint="the default fits"),
    EnvVar("GITHUB_ACTOR", "set by GitHub Actions: a `migrate request` from CI is recorded as `cli:<actor>`",
           not_in_blueprint="GitHub Actions sets it"),
)


def markdown_table(variables: tuple[EnvVar, ...] = ENVIRONMENT) -> str:
    rows = ["| variable | secret | meaning | in render.yaml |", "|---|---|---|---|"]
    rows += [f"| `{v.name}` | {'yes' if v.secret else ''} | {_cell(v.help)} | {_cell(v.not_in_blueprint) or 'yes'} |"
             for v in variables]
    return "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", chr(92) + "|")


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of the declared secrets that are set, and the password of each connection string
    among them: what every message, log line and error text is scrubbed of."""
    environ = os.environ if environ is None else environ
    found: list[str] = []
    for var in ENVIRONMENT:
        value = environ.get(var.name) if var.secret else None
        if value:
            found += dsn_secrets(value) if var.connection else [value]  # dsn_secrets starts with the value
    return found


def secret_problem(name: str, value: str, connection: bool) -> str | None:
    """Why a secret's value cannot be kept out of messages (None: it can); never quotes the value.
    A connection string must read the same to libpq and to a URL parser (else a piece of its
    password is shown as a host or a port), and no secret may be shorter than SHORTEST_SECRET."""
    from handlers.errors import ConfigError
    from handlers.target import SHORTEST_SECRET, check_connection_string, connection_password

    what = name
    if connection:
        try:
            check_connection_string(name, value)
        except ConfigError as exc:
            return str(exc)
        value, what = connection_password(value) or "", f"the password in {name}"
    if value and len(value) < SHORTEST_SECRET:
        return (f"{what} is shorter than {SHORTEST_SECRET} characters: dbops cannot keep a value that short out "
                "of its messages and logs; use a longer one")
    return None


ENV_EXAMPLE_HEADING = "# Copy to .env (never commit it). Every variable is read from the environment too."


def env_example(variables: tuple[EnvVar, ...] = ENVIRONMENT) -> str:
    """The text of .env.example: each variable's help, then its line (commented out without an example)."""
    blocks = [ENV_EXAMPLE_HEADING]
    for var in variables:
        lines = textwrap.wrap(var.help, width=98, break_on_hyphens=False)
        assignment = f"# {var.name}=" if var.example is None else f"{var.name}={var.example}"
        blocks.append("\n".join([*(f"# {line}" for line in lines), assignment]))
    return "\n\n".join(blocks) + "\n"
