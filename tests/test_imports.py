"""What the terminal command loads: `dbops --help` and `dbops migrate check FILE` (no database) start
quickly because declaring the commands imports no database driver, Slack, S3 or HTTP client, and
the handler packages load a module only when one of its names is used (handlers/lazy.py).

Each check runs in a fresh interpreter, so what an earlier test imported cannot hide a regression."""
from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "migrations"
# The heavy clients: none of them is needed to list commands or to check a file without a database.
HEAVY = ("psycopg", "psycopg_pool", "slack_sdk", "slack_bolt", "boto3", "botocore", "httpx", "cryptography",
         "psutil")
LAZY_PACKAGES = ("handlers.backup", "handlers.drill", "handlers.indexes", "handlers.indexes.advice",
                 "handlers.migrations",
                 "handlers.readonly", "handlers.render", "handlers.restore")


def loaded_after(code: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> dict:
    """Runs `code` in a fresh interpreter; returns {"modules": top-level packages loaded, "exit": main's
    return value if the code set `rc`}."""
    script = (f"import sys\n{code}\n"
              "import json\n"
              "print('\\n' + json.dumps({'modules': sorted({m.split('.')[0] for m in sys.modules}),"
              " 'exit': globals().get('rc')}))\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DBOPS_", "DATABASE_URL", "SLACK_", "RENDER_"))}
    base |= {"PYTHONPATH": str(ROOT), "DBOPS_DOTENV": "/nonexistent/.env"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd,
                          env={**base, **(env or {})}, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_cli_loads_no_database_slack_s3_or_http_client():
    modules = loaded_after("import bot.frontends.cli")["modules"]
    assert [m for m in HEAVY if m in modules] == []
    assert "pglast" not in modules and "tabulate" not in modules


def test_help_loads_no_client_and_no_sql_parser():
    found = loaded_after("import bot.frontends.cli as cli\nrc = cli.main(['--help'])")
    assert found["exit"] == 0
    assert [m for m in HEAVY + ("pglast",) if m in found["modules"]] == []


def test_migrate_check_without_a_database_loads_the_parser_and_nothing_heavy():
    up = EXAMPLES / "drop_pinned.up.sql"
    found = loaded_after(f"import bot.frontends.cli as cli\nrc = cli.main(['migrate', 'check', {str(up)!r}])")
    assert found["exit"] == 3  # drops a column: it needs an approver, so the check really ran
    assert "pglast" in found["modules"]
    assert [m for m in HEAVY if m in found["modules"]] == []


@pytest.mark.parametrize("toml", [
    '[migrate.rehearsal]\nsource = "schema"\njobs = 4\n',
    '[migrate.apply]\nlock_timeout_s = 2\n',
], ids=["migrate.rehearsal", "migrate.apply"])
def test_checking_a_rehearsal_or_apply_section_loads_no_database_driver(tmp_path, toml):
    """The sections of the rehearsal and the apply are checked before every command; their settings
    live apart from the code that runs them, so checking one loads no psycopg."""
    config = tmp_path / "dbops.toml"
    config.write_text(toml)
    up = EXAMPLES / "drop_pinned.up.sql"
    found = loaded_after(f"import bot.frontends.cli as cli\nrc = cli.main(['migrate', 'check', {str(up)!r}])",
                         env={"DBOPS_CONFIG": str(config)})
    assert found["exit"] == 3  # the check ran: the section was accepted
    assert [m for m in HEAVY if m in found["modules"]] == []


@pytest.mark.parametrize("toml, named", [
    ('[migrate.apply]\nlock_retries = -1\n', "lock_retries"),
    ('[migrate.rehearsal]\nsource = "tape"\n', "source"),
    ('[render]\nworkspace_plan = "platinum"\n', "workspace_plan"),
    ('[drill]\nno_such_setting = 1\n', "no_such_setting"),
])
def test_every_section_is_still_checked_before_a_migrate_check(tmp_path, toml, named):
    """Loading a section's module only when it is checked must not skip the check: a bad value
    anywhere in dbops.toml still stops the command, naming the key."""
    config = tmp_path / "dbops.toml"
    config.write_text(toml)
    up = EXAMPLES / "add_archived_flag.up.sql"
    done = subprocess.run([sys.executable, "-m", "bot.frontends.cli", "migrate", "check", str(up)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**{k: v for k, v in os.environ.items() if not k.startswith(("DBOPS_", "DATABASE_URL"))},
                               "PYTHONPATH": str(ROOT), "DBOPS_DOTENV": "/nonexistent/.env",
                               "DBOPS_CONFIG": str(config)})
    assert done.returncode == 2, done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr


def _type_checking_names(package: str) -> dict[str, str]:
    """name -> ".module", as the package's `if TYPE_CHECKING:` block imports them."""
    path = Path(importlib.util.find_spec(package).origin)
    names: dict[str, str] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.level == 1, ast.unparse(stmt)
                names |= {alias.name: f".{stmt.module}" for alias in stmt.names}
    return names


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_a_lazy_package_gives_every_public_name_from_the_module_its_type_checking_block_names(package):
    module = importlib.import_module(package)
    declared = _type_checking_names(package)
    assert sorted(declared) == sorted(module.__all__)
    for name, where in declared.items():
        assert getattr(module, name) is getattr(importlib.import_module(where, package), name), name
    assert set(module.__all__) <= set(dir(module))


def _make_package(root: Path, name: str, init: str, modules: dict[str, str]) -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text(init)
    for module, text in modules.items():
        (root / name / f"{module}.py").write_text(text)


def test_a_lazy_name_loads_its_module_once_and_an_unknown_name_is_an_attribute_error(tmp_path, monkeypatch):
    init = ("from handlers.lazy import lazy_exports\n"
            "__getattr__, __dir__ = lazy_exports(__name__, {'.things': ('Thing',)})\n")
    _make_package(tmp_path, "lazypkg_one", init, {"things": "LOADS = []\nLOADS.append(1)\nclass Thing: pass\n",
                                                   "other": "VALUE = 7\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    package = importlib.import_module("lazypkg_one")
    assert "lazypkg_one.things" not in sys.modules
    first, second = package.Thing, package.Thing
    assert first is second and sys.modules["lazypkg_one.things"].LOADS == [1]
    assert package.other.VALUE == 7  # a submodule nobody imported yet, as `import` would give it
    with pytest.raises(AttributeError, match="no attribute 'Missing'"):
        package.Missing
    assert not hasattr(package, "missing_module")


def test_a_missing_dependency_of_a_lazy_module_is_not_reported_as_a_missing_name(tmp_path, monkeypatch):
    """`import nosuchdriver` failing inside the module must surface as that ModuleNotFoundError, not
    be turned into "no attribute", which would send a reader looking in the wrong place."""
    init = ("from handlers.lazy import lazy_exports\n"
            "__getattr__, __dir__ = lazy_exports(__name__, {'.broken': ('Thing',)})\n")
    _make_package(tmp_path, "lazypkg_two", init, {"broken": "import nosuchdriver_dbops\nclass Thing: pass\n",
                                                   "alsobroken": "import nosuchdriver_dbops\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    package = importlib.import_module("lazypkg_two")
    with pytest.raises(ModuleNotFoundError) as named:
        package.Thing
    assert named.value.name == "nosuchdriver_dbops"
    with pytest.raises(ModuleNotFoundError) as submodule:
        package.alsobroken
    assert submodule.value.name == "nosuchdriver_dbops"



def test_a_name_spelled_like_its_module_stays_the_function_whichever_loads_first():
    """handlers.indexes.review is the function in review.py. digest.py imports that module, and Python
    then binds the module to `review` on the package; the index review must still be callable."""
    code = ("import handlers.indexes.digest\nfrom handlers import indexes\n"
            "rc = [indexes.review.__module__, callable(indexes.review), indexes.IndexReview.__module__]")
    assert loaded_after(code)["exit"] == ["handlers.indexes.review", True, "handlers.indexes.review"]


def test_a_namesake_module_imported_first_leaves_the_package_giving_the_function(tmp_path, monkeypatch):
    init = ("from handlers.lazy import lazy_exports\n"
            "__getattr__, __dir__ = lazy_exports(__name__, {'.work': ('work', 'Other')})\n")
    _make_package(tmp_path, "lazypkg_three", init, {"work": "def work():\n    return 'done'\nclass Other: pass\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("lazypkg_three.work")  # as another module's `from .work import Other` would
    package = importlib.import_module("lazypkg_three")
    assert package.work() == "done" and package.Other.__module__ == "lazypkg_three.work"


def test_a_dotenv_file_is_still_read_and_python_dotenv_loads_only_for_one(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("DBOPS_CHANNEL=C0123456789\n")
    code = "from bot.core.config import load_settings\nrc = load_settings().channel"
    read = loaded_after(code, env={"DBOPS_DOTENV": str(dotenv)}, cwd=tmp_path)
    assert read["exit"] == "C0123456789" and "dotenv" in read["modules"]
    missing = loaded_after(code, env={"DBOPS_DOTENV": str(tmp_path / "absent.env")}, cwd=tmp_path)
    assert missing["exit"] is None and "dotenv" not in missing["modules"]
