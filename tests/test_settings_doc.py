"""Settings declared once: dbops.example.toml and the README's tables are what the declarations
write, each declared default is the settings class's own, a bad value is named with what is
allowed (its value shown only where that is safe), and every environment variable the code reads
is declared."""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from bot.core.config import documented_sections, load_settings, main, written_docs
from handlers import config_values as cv
from handlers.environment import ENVIRONMENT, secret_values
from handlers.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


WRITTEN = ("README.md", "dbops.example.toml", ".env.example")


def copy_docs(root: Path) -> None:
    for name in WRITTEN:
        shutil.copy(ROOT / name, root / name)


def test_the_examples_and_the_readme_are_what_the_declarations_write():
    assert sorted(path.name for path in written_docs(ROOT)) == sorted(WRITTEN)
    for path, text in written_docs(ROOT).items():
        assert path.read_text() == text, f"{path.name} is not current: run python -m bot.core.config --write-docs"


def test_the_check_fails_on_a_stale_copy_and_write_docs_makes_it_current(tmp_path, capsys):
    copy_docs(tmp_path)
    example = tmp_path / "dbops.example.toml"
    example.write_text(example.read_text().replace("window_days = 30", "window_days = 31"))
    assert main(["--root", str(tmp_path)]) == 1
    assert "dbops.example.toml is not current" in capsys.readouterr().out
    assert main(["--root", str(tmp_path), "--write-docs"]) == 0
    assert main(["--root", str(tmp_path)]) == 0
    assert example.read_text() == (ROOT / "dbops.example.toml").read_text()


def test_a_stale_table_of_environment_variables_is_found_and_rewritten(tmp_path, capsys):
    copy_docs(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace("| `DBOPS_WORKERS` |", "| `DBOPS_WORKER_COUNT` |"))
    assert main(["--root", str(tmp_path)]) == 1
    assert "README.md is not current" in capsys.readouterr().out
    assert main(["--root", str(tmp_path), "--write-docs"]) == 0
    assert readme.read_text() == (ROOT / "README.md").read_text()


def test_a_stale_env_example_is_found_and_rewritten(tmp_path, capsys):
    copy_docs(tmp_path)
    example = tmp_path / ".env.example"
    example.write_text(example.read_text().replace("PORT=3000\n", "") + "DBOPS_OLD_NAME=1\n")
    assert main(["--root", str(tmp_path)]) == 1
    assert ".env.example is not current" in capsys.readouterr().out
    assert main(["--root", str(tmp_path), "--write-docs"]) == 0
    assert main(["--root", str(tmp_path)]) == 0
    assert example.read_text() == (ROOT / ".env.example").read_text()


def test_env_example_gives_each_variable_its_help_and_a_line_commented_out_without_an_example():
    text = (ROOT / ".env.example").read_text()
    lines = text.splitlines()
    assert lines[0].startswith("# Copy to .env (never commit it).")
    assert max(len(line) for line in lines) <= 100
    for var in ENVIRONMENT:
        line = f"# {var.name}=" if var.example is None else f"{var.name}={var.example}"
        assert lines.count(line) == 1, var.name
        assert lines[lines.index(line) - 1].startswith("# "), var.name  # its help, just above
    assert "DATABASE_URL=postgresql://asidenote:CHANGE_ME@dpg-xxxx-a:5432/asidenote" in lines
    assert "DBOPS_ALLOWED_USERS=" in lines and "# DBOPS_STATE_URL=" in lines


def test_a_readme_without_the_markers_of_a_table_is_named(tmp_path):
    shutil.copy(ROOT / "dbops.example.toml", tmp_path / "dbops.example.toml")
    (tmp_path / "README.md").write_text((ROOT / "README.md").read_text().replace("<!-- environment:end -->", ""))
    with pytest.raises(ConfigError, match="environment:start -->.*environment variables table"):
        written_docs(tmp_path)


# Read, but not dbops's to document: the terminal's width, and a libpq variable of an environment the
# code builds for a child process (`env` there is that dict, not os.environ).
NOT_DBOPS = {"COLUMNS", "PGDATABASE"}
# Reads of a variable whose name comes from configuration, not from the code: (file, the name's
# expression) -> where the name comes from. A read through any other expression fails the test.
NAMED_BY_CONFIGURATION = {
    ("bot/core/config.py", "options['url_env']"): "a target's url_env in dbops.toml names it",
    ("bot/core/config.py", "key"): "a loop over the literal names SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET",
    ("bot/core/config.py", "name"): "a loop over the declared secrets and the targets' url_env",
    ("handlers/drill/settings.py", "self.scratch_url_env"): "drill.scratch_url_env in dbops.toml names it",
    ("handlers/postgres/client.py", "name"): "HOME and TMPDIR, the only variables a client program keeps of the bot's",
    ("handlers/postgres/binaries.py", "f'DBOPS_PG_BIN_{major}'"): "DBOPS_PG_BIN_<major>, one per PostgreSQL major",
}


def _is_environ(node: ast.expr) -> bool:
    """os.environ, or `env`: the name the code gives os.environ or a mapping standing in for it."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name)
            and node.value.id == "os") or (isinstance(node, ast.Name) and node.id == "env")


def env_reads(source: str) -> list[tuple[str | None, str]]:
    """Each read of the environment in `source`, in order: (the variable's name when the code writes it
    out, else None; the source of the name's expression). The forms: os.environ.get(X), os.environ[X],
    os.getenv(X), X in os.environ, and the same through `env`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute) and (
                (node.func.attr == "get" and _is_environ(node.func.value))
                or (node.func.attr == "getenv" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "os")):
            key = node.args[0]
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_environ(node.value):
            key = node.slice
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.In, ast.NotIn)) \
                and _is_environ(node.comparators[0]):
            key = node.left
        else:
            continue
        literal = key.value if isinstance(key, ast.Constant) and isinstance(key.value, str) else None
        found.append((node.lineno, node.col_offset, literal, ast.unparse(key)))
    return [(literal, expression) for *_, literal, expression in sorted(found)]


def reads_in_the_code() -> list[tuple[str, str | None, str]]:
    """(file, name or None, expression) for every read of the environment in bot/ and handlers/."""
    return [(str(path.relative_to(ROOT)), literal, expression)
            for top in ("bot", "handlers") for path in sorted((ROOT / top).rglob("*.py"))
            for literal, expression in env_reads(path.read_text())]


def variables_read() -> dict[str, str]:
    """name -> the first file reading it, over bot/ and handlers/."""
    found: dict[str, str] = {}
    for where, literal, _ in reads_in_the_code():
        if literal is not None:
            found.setdefault(literal, where)
    return found


def test_every_environment_variable_the_code_reads_is_declared():
    read = variables_read()
    # the scan really sees each form of read, so an empty result cannot pass for "all declared"
    assert {"DBOPS_WORKERS", "SLACK_BOT_TOKEN", "RENDER_API_URL", "DBOPS_PG_BIN"} <= set(read)
    declared = {v.name for v in ENVIRONMENT}
    undeclared = {name: where for name, where in read.items() if name not in declared | NOT_DBOPS}
    assert not undeclared, f"declare these in handlers/environment.py: {undeclared}"


def test_every_read_of_a_variable_named_elsewhere_is_known():
    computed = {(where, expression) for where, literal, expression in reads_in_the_code() if literal is None}
    unknown = computed - set(NAMED_BY_CONFIGURATION)
    assert not unknown, f"name the variable in the code, or add the read to NAMED_BY_CONFIGURATION: {unknown}"
    assert set(NAMED_BY_CONFIGURATION) <= computed, "a read in NAMED_BY_CONFIGURATION is gone: remove it"


def test_the_scan_finds_every_form_of_read():
    source = ('os.environ.get("DBOPS_A")\nos.environ["DBOPS_B"]\nos.getenv( "DBOPS_C")\n'
              "env.get('DBOPS_D', '1')\nenv['DBOPS_E']\nsettings.get(\"NOT_ONE\")\n"
              "if 'DBOPS_F' not in os.environ: pass\nos.environ.get(self.name_env)\nos.getenv(prefix + '_URL')\n"
              "env['PGDATA'] = '/x'\nwsgi_environ.get('PATH_INFO')\nos.environ.items()\n")
    assert env_reads(source) == [("DBOPS_A", "'DBOPS_A'"), ("DBOPS_B", "'DBOPS_B'"), ("DBOPS_C", "'DBOPS_C'"),
                                 ("DBOPS_D", "'DBOPS_D'"), ("DBOPS_E", "'DBOPS_E'"), ("DBOPS_F", "'DBOPS_F'"),
                                 (None, "self.name_env"), (None, "prefix + '_URL'")]


def test_every_declared_variable_is_read_once_declared_and_secrets_are_scrubbed(monkeypatch):
    source = "".join(p.read_text() for top in ("bot", "handlers") for p in (ROOT / top).rglob("*.py")
                     if p.name != "environment.py")
    names = [v.name for v in ENVIRONMENT]
    assert len(names) == len(set(names))
    # a declaration nothing reads is stale: dbops's code names it, or the library that reads it is named
    assert [v.name for v in ENVIRONMENT if f'"{v.name}"' not in source and not v.read_by] == []
    assert [v.name for v in ENVIRONMENT if v.read_by and v.name in variables_read()] == []
    for var in ENVIRONMENT:
        monkeypatch.setenv(var.name, f"postgresql://u:pw-{var.name}@db/x")
    found = load_settings({}, read_dotenv=False).secrets()
    assert set(secret_values()) <= set(found)
    for var in ENVIRONMENT:
        assert (f"pw-{var.name}" in found) is var.connection, var.name
        assert any(f"pw-{var.name}" in s for s in found) is var.secret, var.name


def test_secret_values_are_the_set_secrets_and_the_passwords_of_their_connection_strings():
    environ = {"DBOPS_STATE_URL": "postgresql://u:statepw@db/x", "SLACK_BOT_TOKEN": "xoxb-1",
               "AWS_SESSION_TOKEN": "sessiontoken", "DBOPS_CHANNEL": "C0123456789", "SLACK_APP_TOKEN": ""}
    assert set(secret_values(environ)) == {"postgresql://u:statepw@db/x", "statepw", "xoxb-1", "sessiontoken"}
    assert secret_values({}) == []


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
    return {"DBOPS_CONFIG": str(path), "DATABASE_URL": "postgresql://u:pw0rd@localhost/asidenote"}


def load(tmp_path: Path, text: str):
    from bot.areas import AREAS
    from bot.core.registry import Registry

    (tmp_path / "dbops.toml").write_text(text)
    return load_settings(env_for(tmp_path / "dbops.toml"), read_dotenv=False, checks=Registry(AREAS).settings_checks)


@pytest.mark.parametrize("toml, message", [
    ('[indexes]\nwindow_days = "thirty"\n',
     'indexes.window_days = "thirty": must be a whole number >= 1 (in [indexes] of'),
    ("[indexes]\nwindow_days = true\n", "indexes.window_days = True: must be a whole number >= 1"),
    ("[backup]\njobs = 0\n", "backup.jobs = 0: must be a whole number >= 1 (in [backup] of"),
    ('[backup.retention]\ndaily = -1\n', "backup.retention.daily = -1: must be a whole number >= 0"),
    ('[drill]\nschedule = "every tuesday"\n', "drill.schedule = \"every tuesday\": 'every tuesday' is not a schedule"),
    ('[digest]\ntime = "25:00"\n', 'digest.time = "25:00": must be a time of day like "03:00"'),
    ('[readonly]\nconnection_limit = 5000\n',
     "readonly.connection_limit = 5000: must be a whole number from 1 to 1000"),
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
