"""Settings: the shipped examples load, and a bad setting is named."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.core.config import load_settings
from handlers.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def env_for(path: Path, **extra: str) -> dict[str, str]:
    return {"DBOPS_CONFIG": str(path), "DATABASE_URL": "postgresql://u:pw0rd@localhost/asidenote", **extra}


@pytest.mark.parametrize("name", ["dbops.toml", "dbops.example.toml"])
def test_shipped_configuration_is_accepted_by_every_area(name):
    from bot.areas import AREAS
    from bot.areas.backup import backup_settings
    from bot.areas.indexes import digest_time, index_settings
    from bot.core.approvals.settings import ApprovalSettings
    from bot.core.registry import Registry
    from handlers.migrations import MigrationCheckSettings

    settings = load_settings(env_for(ROOT / name, STAGING_DATABASE_URL="postgresql://s@localhost/s",
                                          RECOVERY_DATABASE_URL="postgresql://r@localhost/r"),
                             checks=Registry(AREAS).settings_checks)
    ApprovalSettings.from_dict(settings.section("approvals"))
    backup_settings(settings)
    index_settings(settings)
    digest_time(settings)
    from bot.areas.drill import drill_settings
    from handlers.migrations import ApplySettings, RehearsalSettings

    migrate = settings.section("migrate")
    MigrationCheckSettings.from_dict(migrate.get("check", {}))
    RehearsalSettings.from_dict(migrate.get("rehearsal", {}))
    ApplySettings.from_dict(migrate.get("apply", {}))
    drill_settings(settings)


def test_a_target_without_its_variable_is_named(tmp_path):
    (tmp_path / "dbops.toml").write_text('[targets.staging]\nurl_env = "STAGING_DATABASE_URL"\n')
    with pytest.raises(ConfigError, match="STAGING_DATABASE_URL is not set"):
        load_settings(env_for(tmp_path / "dbops.toml"))


def test_malformed_toml_is_reported_with_its_place(tmp_path):
    (tmp_path / "dbops.toml").write_text("[backup\nformat = 1\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(env_for(tmp_path / "dbops.toml"))


def test_secrets_are_collected_for_scrubbing():
    settings = load_settings({"DATABASE_URL": "postgresql://u:s3cr3tpass@db/asidenote", "SLACK_BOT_TOKEN": "xoxb-abc",
                              "SLACK_SIGNING_SECRET": "sigsecret", "DBOPS_CONFIG": str(ROOT / "dbops.toml")})
    assert {"s3cr3tpass", "xoxb-abc", "sigsecret"} <= set(settings.secrets())
    assert "s3cr3tpass" not in settings.target().label


@pytest.mark.parametrize("toml, named", [
    ('[targets.staging]\nurll_env = "STAGING_DATABASE_URL"\n',
     "targets.staging.urll_env is not a setting; known: render_postgres_id, role, url_env"),
    ('[targets.staging]\nurl_env = "STAGING_DATABASE_URL"\nrender_postgress_id = "dpg-x"\n',
     "targets.staging.render_postgress_id is not a setting; known: render_postgres_id, role, url_env"),
    ('[targets.staging]\nrender_postgres_id = "dpg-x"\n', "targets.staging.url_env is required"),
    ('[targets]\nstaging = "STAGING_DATABASE_URL"\n', "[targets.staging] must be a table of settings"),
    ('targets = "staging"\n', "targets in"),
])
def test_a_target_table_is_read_through_its_declaration(tmp_path, toml, named):
    (tmp_path / "dbops.toml").write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_for(tmp_path / "dbops.toml", STAGING_DATABASE_URL="postgresql://s@localhost/s"),
                      read_dotenv=False)
    assert named in str(caught.value)
    assert str(tmp_path / "dbops.toml") in str(caught.value)


@pytest.mark.parametrize("toml", [
    # a connection string where the variable's name belongs, and one under a key of its own
    '[targets.staging]\nurl_env = "postgresql://u:hunter2pw@db/x"\n',
    '[targets.staging]\nurl = "postgresql://u:hunter2pw@db/x"\n',
])
def test_a_connection_string_in_a_target_table_is_refused_and_never_repeated(tmp_path, toml):
    (tmp_path / "dbops.toml").write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_for(tmp_path / "dbops.toml"), read_dotenv=False)
    assert "targets.staging.url" in str(caught.value)
    assert "hunter2pw" not in str(caught.value)


def test_a_declared_target_is_read_with_its_options(tmp_path):
    (tmp_path / "dbops.toml").write_text('[targets.staging]\nurl_env = "STAGING_DATABASE_URL"\n'
                                         'render_postgres_id = "dpg-abc"\n')
    settings = load_settings(env_for(tmp_path / "dbops.toml", STAGING_DATABASE_URL="postgresql://s@localhost/s"),
                             read_dotenv=False)
    assert settings.target("staging").dsn == "postgresql://s@localhost/s"
    assert settings.target_options["staging"] == {"render_postgres_id": "dpg-abc", "role": "database"}
    assert settings.watched_targets == ["prod", "staging"] and not settings.is_restore_target("staging")


def test_a_restore_target_is_not_watched(tmp_path):
    (tmp_path / "dbops.toml").write_text('[targets.recovery]\nurl_env = "RECOVERY_DATABASE_URL"\n'
                                         'role = "restore-target"\n')
    env = env_for(tmp_path / "dbops.toml", RECOVERY_DATABASE_URL="postgresql://r@localhost/r",
                  DATABASE_URL="postgresql://p@localhost/p")
    settings = load_settings(env, read_dotenv=False)
    assert settings.is_restore_target("recovery") and settings.watched_targets == ["prod"]
    (tmp_path / "dbops.toml").write_text('[targets.recovery]\nurl_env = "RECOVERY_DATABASE_URL"\nrole = "spare"\n')
    with pytest.raises(ConfigError, match="targets.recovery.role"):
        load_settings(env, read_dotenv=False)
