"""A terminal requester is whoever LOGNAME, USER or GITHUB_ACTOR say: the request says it is a
claim, and a claim never makes a request clean enough for `approvals.auto_apply_clean`."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg

from bot.core.approvals.book import ApprovalBook
from bot.core.approvals.message import request_blocks
from bot.core.approvals.settings import ApprovalSettings
from bot.core.state.store import StateStore
from tests.fakes.bot_process import ROOT

UP = "COMMENT ON TABLE t IS 'the table';\n"
DOWN = "COMMENT ON TABLE t IS NULL;\n"


def test_a_mapped_terminal_login_is_a_claim_and_never_auto_applied(fresh_db, tmp_path):
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
    (tmp_path / "up.sql").write_text(UP)
    (tmp_path / "down.sql").write_text(DOWN)
    (tmp_path / "dbops.toml").write_text('[approvals]\nauto_apply_clean = true\n\n[identities]\nalice = "U0ALICE"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOPS_", "DATABASE_URL", "SLACK_", "GITHUB_"))}
    env |= {"PYTHONPATH": str(ROOT), "DATABASE_URL": fresh_db, "DBOPS_DOTENV": "/nonexistent",
            "DBOPS_CONFIG": str(tmp_path / "dbops.toml"), "DBOPS_BACKUP_DIR": str(tmp_path / "b"),
            "LOGNAME": "alice", "USER": "alice"}  # anyone can say so
    done = subprocess.run([sys.executable, "-m", "bot.frontends.cli", "migrate", "request", "up.sql", "--down",
                           "down.sql", "--name", "comment-t", "--format", "json"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    report = json.loads(done.stdout)
    assert not report["findings"], report["findings"]  # clean: auto_apply_clean would apply it
    assert report["verified_requester"] is True  # mapped under [identities]
    assert report["required_approvals"] == 1 and done.returncode == 3, done.stdout + done.stderr

    store = StateStore(fresh_db, max_size=1)
    try:
        req = ApprovalBook(store).by_code(report["request"])
        text = json.dumps(request_blocks(req, ApprovalSettings(), []))
    finally:
        store.close()
    assert "`cli:alice` is a terminal login: a claim" in text and "LOGNAME" in text
