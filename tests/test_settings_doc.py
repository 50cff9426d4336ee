"""Settings declared once: dbops.example.toml and the README's tables are what the declarations
write, each declared default is the settings class's own, a bad value is named with what is
allowed (its value shown only where that is safe), and every environment variable the code reads
is declared."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from bot.core.config import documented_sections, load_settings, main, written_docs
from handlers.environment import ENVIRONMENT
from handlers import config_values as cv
from handlers.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_the_example_and_the_readme_are_what_the_declarations_write():
    for path, text in written_docs(ROOT).items():
        assert path.read_text() == text, f"{path.name} is not current: run python -m bot.core.config --write-docs"


def test_the_check_fails_on_a_stale_copy_and_write_docs_makes_it_current(tmp_path, capsys):
    for name in ("README.md", "dbops.example.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    example = tmp_path / "dbops.example.toml"
    example.write_text(example.read_text().replace("window_days = 30", "window_days = 31"))
    assert main(["--root", str(tmp_path)]) == 1
    assert "dbops.example.toml is not current" in capsys.readouterr().out
    assert main(["--root", str(tmp_path), "--write-docs"]) == 0
    assert main(["--root", str(tmp_path)]) == 0
    assert example.read_text() == (ROOT / "dbops.example.toml").read_text()


def test_a_stale_table_of_environment_variables_is_found_and_rewritten(tmp_path, capsys):
    for name in ("README.md", "dbops.example.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace("| `DBOPS_WORKERS` |", "| `DBOPS_WORKER_COUNT` |"))
    assert main(["--root", str(tmp_path)]) == 1
    assert "README.md is not current" in capsys.readouterr().out
    assert main(["--root", str(tmp_path), "--write-docs"]) == 0
    assert readme.read_text() == (ROOT / "README.md").read_text()


def test_a_readme_without_the_markers_of_a_table_is_named(tmp_path):
    shutil.copy(ROOT / "dbops.example.toml", tmp_path / "dbops.example.toml")
    (tmp_path / "README.md").write_text((ROOT / "README.md").read_text().replace("<!-- environment:end -->", ""))
    with pytest.raises(ConfigError, match="environment:start -->.*environment variables table"):
        written_docs(tmp_path)


# A read of one named variable: os.environ.get("X"), os.environ["X"], os.getenv("X"), and env.get("X") /
# env["X"] where `env` is os.environ or a mapping standing in for it (bot/core/config.py, render).
ENV_READ = re.compile(r"""(?:\bos\.environ|\benv)(?:\.get\(|\[)\s*["']([A-Z][A-Z0-9_]*)["']|"""
                      r"""\bos\.getenv\(\s*["']([A-Z][A-Z0-9_]*)["']""")
# Read, but not dbops's to document: the terminal's width, and the libpq variables of the environments
# the code builds for its child processes (`env` there is that dict, not os.environ).
NOT_DBOPS = {"COLUMNS", "PGDATA", "PGDATABASE"}


def variables_read() -> dict[str, str]:
    """name -> the first file reading it, over bot/ and handlers/."""
    found: dict[str, str] = {}
    for top in ("bot", "handlers"):
        for path in sorted((ROOT / top).rglob("*.py")):
            for match in ENV_READ.finditer(path.read_text()):
                found.setdefault(match.group(1) or match.group(2), str(path.relative_to(ROOT)))
    return found


def test_every_environment_variable_the_code_reads_is_declared():
    read = variables_read()
    # the pattern really sees each form of read, so an empty result cannot pass for "all declared"
    assert {"DBOPS_WORKERS", "SLACK_BOT_TOKEN", "RENDER_API_URL", "DBOPS_PG_BIN"} <= set(read)
    declared = {v.name for v in ENVIRONMENT}
    undeclared = {name: where for name, where in read.items() if name not in declared | NOT_DBOPS}
    assert not undeclared, f"declare these in handlers/environment.py: {undeclared}"


def test_the_pattern_finds_every_form_of_read():
    source = ('os.environ.get("DBOPS_A")\nos.environ["DBOPS_B"]\nos.getenv( "DBOPS_C")\n'
              "env.get('DBOPS_D', '1')\nenv['DBOPS_E']\nsettings.get(\"NOT_ONE\")\n")
    assert [m.group(1) or m.group(2) for m in ENV_READ.finditer(source)] == [
        "DBOPS_A", "DBOPS_B", "DBOPS_C", "DBOPS_D", "DBOPS_E"]


def test_every_declared_variable_is_named_in_the_code_once_and_secrets_are_scrubbed(monkeypatch):
    source = "".join(p.read_text() for top in ("bot", "handlers") for p in (ROOT / top).rglob("*.py")
                     if p.name != "environment.py")
    names = [v.name for v in ENVIRONMENT]
    assert len(names) == len(set(names))
    assert [n for n in names if f'"{n}"' not in source] == []  # a declaration nothing reads is stale
    for var in ENVIRONMENT:
        monkeypatch.setenv(var.name, f"postgresql://u:pw-{var.name}@db/x")
    found = load_settings({}, read_dotenv=False).secrets()
    for var in ENVIRONMENT:
        assert (f"pw-{var.name}" in found) is var.connection, var.name
        assert any(f"pw-{var.name}" in s for s in found) is var.secret, var.name


def test_every_declared_key_is_in_the_example_and_the_readme():
    example, readme = (ROOT / "dbops.example.toml").read_text(), (ROOT / "README.md").read_text()
    for section in documented_sections():
        for setting in section.settings:
            inner = setting.fields if setting.kind in ("table", "entries") else (setting,)
            for s in inner:
                assert f"{s.key} = " in example, (section.name, s.key)
            assert f".{setting.key}" in readme, (section.name, setting.key)


@pytest.mark.parametrize("build", [
    lambda: __import__("handlers.backup.settings", fromlist=["x"]).BackupSettings,
    lambda: __import__("handlers.drill.settings", fromlist=["x"]).DrillSettings,
    lambda: __import__("handlers.indexes.settings", fromlist=["x"]).IndexSettings,
    lambda: __import__("handlers.readonly.settings", fromlist=["x"]).ReadonlySettings,
    lambda: __import__("handlers.migrations", fromlist=["x"]).MigrationCheckSettings,
    lambda: __import__("handlers.migrations", fromlist=["x"]).ApplySettings,
    lambda: __import__("handlers.migrations", fromlist=["x"]).RehearsalSettings,
    lambda: __import__("bot.core.approvals.settings", fromlist=["x"]).ApprovalSettings,
], ids=["backup", "drill", "indexes", "readonly", "migrate.check", "migrate.apply", "migrate.rehearsal", "approvals"])
def test_each_declared_default_is_the_settings_class_default(build, monkeypatch):
    monkeypatch.delenv("DBOPS_BACKUP_DIR", raising=False)
    cls = build()
    assert cls.from_dict({}) == cls()


def test_render_declared_defaults_are_its_class_defaults():
    from handlers.render.settings import RenderSettings

    assert RenderSettings.from_config({}, env={}) == RenderSettings()


def test_no_secret_is_a_dbops_toml_key():
    """Connection strings, tokens and keys live in the environment; dbops.toml only names variables."""
    keys = [f"{sec.name}.{s.key}" for sec in documented_sections() for s in sec.settings]
    assert not [k for k in keys if any(word in k.split(".")[-1] for word in
                                        ("password", "secret", "token", "api_key", "dsn"))]
    assert not [k for k in keys if k.endswith((".url", "database_url"))]


def env_for(path: Path) -> dict[str, str]:
    return {"DBOPS_CONFIG": str(path), "DATABASE_URL": "postgresql://u:pw@localhost/asidenote"}


def load(tmp_path: Path, text: str):
    from bot.areas import AREAS
    from bot.core.registry import Registry

    (tmp_path / "dbops.toml").write_text(text)
    return load_settings(env_for(tmp_path / "dbops.toml"), read_dotenv=False, checks=Registry(AREAS).settings_checks)


@pytest.mark.parametrize("toml, message", [
    ('[indexes]\nwindow_days = "thirty"\n', 'indexes.window_days = "thirty": must be a whole number >= 1 (in [indexes] of'),
    ("[indexes]\nwindow_days = true\n", "indexes.window_days = True: must be a whole number >= 1"),
    ("[backup]\njobs = 0\n", "backup.jobs = 0: must be a whole number >= 1 (in [backup] of"),
    ('[backup.retention]\ndaily = -1\n', "backup.retention.daily = -1: must be a whole number >= 0"),
    ('[drill]\nschedule = "every tuesday"\n', "drill.schedule = \"every tuesday\": 'every tuesday' is not a schedule"),
    ('[digest]\ntime = "25:00"\n', 'digest.time = "25:00": must be a time of day like "03:00"'),
    ('[readonly]\nconnection_limit = 5000\n', "readonly.connection_limit = 5000: must be a whole number from 1 to 1000"),
    ('[migrate.apply]\nlock_retries = 101\n', "migrate.apply.lock_retries = 101: must be a whole number from 0 to 100"),
    ('[approvals]\nexpires_hours = 0\n', "approvals.expires_hours = 0: must be a number > 0"),
    ('[slack]\napprover_groups = ["U1"]\n', "slack.approver_groups must be a list of user group IDs"),
])
def test_a_bad_value_stops_the_whole_configuration_and_is_named_with_what_is_allowed(tmp_path, toml, message):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, toml)
    assert message in str(caught.value)


@pytest.mark.parametrize("toml, named", [
    # an unknown key: a URL pasted in place of a variable's name
    ('[drill]\nscratch_url = "postgresql://u:hunter2pw@db/x"\n', "drill.scratch_url is not a setting"),
    # a known key that must name a variable
    ('[drill]\nscratch_url_env = "postgresql://u:hunter2pw@db/x"\n', "drill.scratch_url_env must be the name of"),
    ('[indexes]\nexpected_url = "postgresql://u:hunter2pw@db/x"\n', "indexes.expected_url is not a setting"),
    ('[backup.s3]\nsecret = "hunter2pw"\n', "backup.s3.secret is not a setting"),
])
def test_a_pasted_secret_is_never_repeated(tmp_path, toml, named):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, toml)
    assert named in str(caught.value)
    assert "hunter2pw" not in str(caught.value)


def test_a_whole_number_is_never_a_bool_and_a_number_is_never_text():
    whole = cv.whole("n", 1, "", low=0)
    number = cv.number("x", 1.0, "", low=0)
    for setting, raw in ((whole, True), (whole, 1.5), (whole, "1"), (number, False), (number, "1.0"), (whole, None)):
        with pytest.raises(cv.SettingError, match="s.n must be|s.x must be"):
            cv.value_of("s", setting, raw)
    assert cv.value_of("s", number, 2) == 2.0 and isinstance(cv.value_of("s", number, 2), float)


def test_an_exclusive_bound_and_a_table_in_place_of_a_value_are_refused():
    above = cv.number("t", 1.0, "", low=0, above=True)
    with pytest.raises(cv.SettingError, match="must be a number > 0"):
        cv.value_of("s", above, 0)
    with pytest.raises(cv.SettingError, match=r"\[s\] must be a table"):
        cv.read("s", (above,), ["t"])
    with pytest.raises(cv.SettingError, match="s.t must be"):
        cv.read("s", (above,), {"t": {"nested": 1}})
