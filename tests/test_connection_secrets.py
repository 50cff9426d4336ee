"""Secrets that could not be kept out of messages are refused at start: a connection string that
libpq and a URL parser read differently (an unencoded `@` or `:` in its password), and any secret
shorter than the scrubber's shortest. The refusal names the variable, never a piece of its value."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.core.config import load_settings
from handlers.errors import ConfigError
from handlers.target import check_connection_string, dsn_secrets, scrub
from tests.fakes.bot_process import BOT_TOKEN, SIGNING_SECRET

ROOT = Path(__file__).resolve().parents[1]
FRAGMENTS = ("Secr3t", "Pa55", "w0rd-Xy")


UNENCODED = "postgresql://app:Secr3t@Pa55:w0rd-Xy@127.0.0.1:55432/app"


def run(module: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    (tmp_path / "none.toml").touch()
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "DBOPS_DOTENV": str(tmp_path / ".env"),
            "DBOPS_CONFIG": str(tmp_path / "none.toml"), "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET, "DBOPS_ALLOWED_CHANNELS": "C0OPS"}
    return subprocess.run([sys.executable, *module], env={**base, **env}, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)


def test_the_bot_refuses_an_unencoded_password_naming_the_variable_only(tmp_path):
    """The attack of issue 20 (8): `/db status` posted `Pa55:w0rd-Xy@127.0.0.1:55432/app` as the
    target, and the terminal said `failed to resolve host 'Pa55'`. Now neither starts."""
    bot = run(["-m", "bot", "--mode", "http"], {"DATABASE_URL": UNENCODED}, tmp_path)
    terminal = run(["-m", "bot.frontends.cli", "status"], {"DATABASE_URL": UNENCODED}, tmp_path)
    for done in (bot, terminal):
        said = done.stdout + done.stderr
        assert done.returncode == 2, said
        assert "DATABASE_URL is read differently by libpq and by a URL parser" in said and "%40" in said
        assert "Traceback" not in said
        for fragment in FRAGMENTS:
            assert fragment not in said


def test_a_target_variable_and_the_state_url_are_checked_too(tmp_path):
    config = tmp_path / "dbops.toml"
    config.write_text('[targets.staging]\nurl_env = "STAGING_URL"\n')
    env = {"DBOPS_CONFIG": str(config), "DATABASE_URL": "postgresql://app:longenough@db/app"}
    with pytest.raises(ConfigError, match="STAGING_URL is read differently") as refused:
        load_settings({**env, "STAGING_URL": "postgresql://app:pa/ss@db/app"})
    assert "pa/ss" not in str(refused.value)
    with pytest.raises(ConfigError, match="DBOPS_STATE_URL is read differently"):
        load_settings({**env, "STAGING_URL": env["DATABASE_URL"], "DBOPS_STATE_URL": "postgresql://b:x?yz@db/s"})
    # Encoded, the same password is fine; so are libpq's own forms.
    for fine in ("postgresql://app:Secr3t%40Pa55%3Aw0rd-Xy@127.0.0.1:5432/app", "host=/tmp dbname=app password=abcd",
                 "postgresql://h1:5432,h2:5433/app?user=app&password=longenough", "postgresql:///app?host=/tmp"):
        check_connection_string("DATABASE_URL", fine)


@pytest.mark.parametrize("variable, value, said", [
    ("SLACK_SIGNING_SECRET", "abc", "SLACK_SIGNING_SECRET is shorter than 4 characters"),
    ("DATABASE_URL", "postgresql://app:pw@db/app", "the password in DATABASE_URL is shorter than 4 characters"),
    ("RENDER_API_KEY", "Zq", "RENDER_API_KEY is shorter than 4 characters"),
])
def test_a_secret_too_short_to_scrub_is_refused_at_start(variable, value, said):
    env = {"DATABASE_URL": "postgresql://app:longenough@db/app", variable: value}
    with pytest.raises(ConfigError) as refused:
        load_settings(env)
    assert said in str(refused.value) and value not in str(refused.value).replace(variable, "")


def test_every_piece_of_the_user_info_is_scrubbed():
    dsn = UNENCODED
    text = "failed to resolve host 'Pa55': port w0rd-Xy@127.0.0.1:55432 for Secr3t"
    cleaned = scrub(text, dsn_secrets(dsn))
    for fragment in FRAGMENTS:
        assert fragment not in cleaned
    assert "Secr3t@Pa55" not in scrub("x Secr3t@Pa55 y", dsn_secrets("postgresql://app:Secr3t%40Pa55@h/app"))
