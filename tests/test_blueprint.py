"""The Render Blueprint (render.yaml) against Render's published schema, and against what the code
reads: every variable it sets is declared, every declared variable is set or says why not, secrets
are never written in it, the bot's state has a database of its own, and its folders are on the disk."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from handlers.environment import ENVIRONMENT
from tests.test_settings_doc import variables_read

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "tests" / "data" / "render-blueprint" / "render.yaml.schema.json").read_text())
RENDER_OWN = {"PYTHON_VERSION"}  # read by Render's build, not by dbops
DECLARED = {v.name: v for v in ENVIRONMENT}


def blueprint() -> dict:
    return yaml.safe_load((ROOT / "render.yaml").read_text())


def service(doc: dict) -> dict:
    [web] = [s for s in doc["services"] if s["type"] == "web"]
    return web


def env_vars(doc: dict) -> dict[str, dict]:
    found = {}
    for entry in service(doc)["envVars"]:
        assert entry["key"] not in found, f"{entry['key']} is set twice"
        found[entry["key"]] = entry
    return found


def schema_errors(doc: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(doc)]


def test_the_blueprint_passes_renders_published_schema():
    assert schema_errors(blueprint()) == []


@pytest.mark.parametrize("break_it", [
    lambda d: service(d).update(healthcheckPath="/healthz"),  # a misspelt key
    lambda d: service(d)["envVars"].append({"key": "X", "sync": "no"}),  # sync is a boolean
    lambda d: d["databases"][0].update(plan="tiny"),  # no such plan
    lambda d: service(d).pop("runtime"),  # required
], ids=["unknown key", "sync not a boolean", "unknown plan", "no runtime"])
def test_the_schema_check_catches_a_broken_blueprint(break_it):
    doc = copy.deepcopy(blueprint())
    break_it(doc)
    assert schema_errors(doc)


def test_every_variable_the_code_reads_is_set_by_the_blueprint_or_says_why_not():
    set_here = set(env_vars(blueprint())) - RENDER_OWN
    read = set(variables_read()) & set(DECLARED)
    assert {"DATABASE_URL", "DBOPS_STATE_URL", "RENDER_POSTGRES_ID", "TMPDIR"} <= read  # the scan sees them
    unset = sorted(name for name in read if name not in set_here and not DECLARED[name].not_in_blueprint)
    assert unset == [], f"render.yaml does not set these, and handlers/environment.py does not say why: {unset}"
    for var in ENVIRONMENT:  # reads through a library (boto3) count as reads too
        assert (var.name in set_here) is (not var.not_in_blueprint), (
            f"{var.name}: set in render.yaml, or not_in_blueprint says why it is not - never both")


def test_the_blueprint_sets_only_declared_variables():
    unknown = sorted(set(env_vars(blueprint())) - set(DECLARED) - RENDER_OWN)
    assert unknown == [], f"render.yaml sets variables dbops does not declare: {unknown}"


def test_secrets_are_never_written_in_the_blueprint():
    for name, entry in env_vars(blueprint()).items():
        var = DECLARED.get(name)
        if var is None or not var.secret:
            continue
        assert "value" not in entry, f"{name} is a secret: never a value in render.yaml"
        made = entry.get("sync") is False or "fromDatabase" in entry or entry.get("generateValue") is True
        assert made, f"{name}: `sync: false`, fromDatabase or generateValue (Render makes a random one)"


def test_the_state_store_is_a_database_of_its_own_declared_in_the_blueprint():
    doc = blueprint()
    found = env_vars(doc)
    declared = {d["name"] for d in doc["databases"]}
    state, prod = found["DBOPS_STATE_URL"]["fromDatabase"], found["DATABASE_URL"]["fromDatabase"]
    assert state["name"] in declared and state["property"] == "connectionString"
    assert prod["property"] == "connectionString" and prod["name"] != state["name"]
    assert prod["name"] not in declared  # production is not made by the bot's Blueprint
    text = (ROOT / "render.yaml").read_text()
    assert f"name: {prod['name']} # EDIT" in text  # the one name a user must change is marked


def test_the_folders_the_bot_writes_are_on_the_services_disk():
    doc = blueprint()
    disk = service(doc)["disk"]["mountPath"]
    found = env_vars(doc)
    for name in ("DBOPS_BACKUP_DIR", "TMPDIR"):
        assert found[name]["value"].startswith(disk + "/"), name


def test_the_blueprint_starts_what_the_procfile_starts():
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    web = service(blueprint())
    assert web["startCommand"] == procfile["web"]
    assert web["healthCheckPath"] == "/healthz"


def test_the_slack_manifest_points_every_url_at_the_one_endpoint():
    manifest = yaml.safe_load((ROOT / "slack-app-manifest.yaml").read_text())
    urls = {manifest["settings"]["event_subscriptions"]["request_url"],
            manifest["settings"]["interactivity"]["request_url"],
            *(c["url"] for c in manifest["features"]["slash_commands"])}
    assert urls == {"https://dbops.example.com/slack/events"}
    assert manifest["settings"]["socket_mode_enabled"] is False  # README: how to switch
