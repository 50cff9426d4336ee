"""Writing the state store is not approving (bot/core/approvals/seal.py): with DBOPS_SEAL_KEY the bot
seals each request it posts and each vote it counts, and the applier (right before a request's first
change) and the pipeline's gate accept only what those seals vouch for. Each attack is what someone who
can write the state database (by default production's, open to the application's role) can do; on a
real state store, the fake Slack and the real `dbops` command."""
from __future__ import annotations

import json

import psycopg
import pytest

from bot.areas import AREAS
from bot.core import applier
from bot.core.approvals.book import RequestStatus, migration_sha256
from bot.core.approvals.seal import Sealer, approval_key
from bot.core.config import Settings, load_settings
from bot.core.registry import Applied, Applier, Area, Registry
from bot.core.service import BotService
from handlers.errors import ConfigError
from handlers.sealing import SEAL_KEY_VARIABLE
from handlers.target import Target
from tests.test_applier import BOSS, COMMENT_UP, approve_and_wait, request, thread
from tests.test_migrations_e2e import dbops

KEY = "k" * 20 + "-a-sealing-key-for-tests"
KEYED = {SEAL_KEY_VARIABLE: KEY}


@pytest.fixture
def svc(demo_db, fake_slack, tmp_path, monkeypatch):
    monkeypatch.setenv(SEAL_KEY_VARIABLE, KEY)
    settings = Settings(targets={"prod": Target("prod", demo_db)}, state_url=demo_db, slack_bot_token="xoxb-test",
                        slack_api_url=fake_slack.url, channel="C0OPS", approvers=frozenset({BOSS}),
                        backup_dir=tmp_path / "backups", sections={"approvals": {"required": 1}})
    ran: list[int] = []

    def apply(svc, req, inv):
        inv.ensure_approved()  # as every area does, right before its first change
        ran.append(req.id)
        return Applied(RequestStatus.APPLIED, "done")

    registry = Registry([*AREAS, Area("test", appliers=(Applier("test", lock="test", apply=apply,
                                                               binds=lambda req: req.sha256),))])
    service = BotService(settings, registry, start_background=False)
    service.ran = ran
    yield service
    service.close()


def store_write(dsn, sql, params=()):
    """What someone who can write to the state database does."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql, params)


def seals(dsn, req):
    with psycopg.connect(dsn) as conn:
        return (conn.execute("SELECT seal FROM dbops.approval_requests WHERE id = %s", (req.id,)).fetchone()[0],
                [r[0] for r in conn.execute("SELECT seal FROM dbops.approval_votes WHERE request_id = %s",
                                            (req.id,))])


def refusal(fake_slack, req):
    return " ".join(t for t in thread(fake_slack, req) if t.startswith(f":no_entry: `{req.code}` refused"))


def test_what_the_bot_posted_and_counted_is_sealed_and_applies(svc, demo_db):
    req = request(svc, "test", {}, "ab" * 32)
    done = approve_and_wait(svc, req)
    assert done.status is RequestStatus.APPLIED and svc.ran == [req.id]
    request_seal, vote_seals = seals(demo_db, req)
    assert len(request_seal) == 64 and len(vote_seals) == 1 and len(vote_seals[0]) == 64


def test_a_request_rewritten_together_with_its_hash_is_refused(svc, demo_db, fake_slack):
    req = request(svc, "test", {}, "ab" * 32)
    # payload and hash rewritten together: the hash check alone cannot see it, the seal does
    store_write(demo_db, "UPDATE dbops.approval_requests SET sha256 = %s, payload = %s WHERE id = %s",
                ("cd" * 32, json.dumps({"up": 'DROP TABLE "AuditLogs";'}), req.id))
    done = approve_and_wait(svc, req)
    assert done.status is RequestStatus.FAILED and svc.ran == []
    assert "seal" in refusal(fake_slack, req) and "does not hold" in refusal(fake_slack, req)


def test_an_approved_request_whose_expiry_was_pushed_out_is_refused_by_the_gate(svc, demo_db, tmp_path):
    (tmp_path / "dbops.toml").write_text("")
    (tmp_path / "up.sql").write_text(COMMENT_UP)
    req = request(svc, "migration", {"up": COMMENT_UP, "down": None, "apply_by": "pipeline"},
                  migration_sha256(COMMENT_UP, None))
    svc.approvals.book.vote(req.id, BOSS, "approve", True, req.created_at)
    store_write(demo_db, "UPDATE dbops.approval_requests SET expires_at = expires_at + interval '30 days'"
                         " WHERE id = %s", (req.id,))
    gate = dbops("migrate", "gate", "up.sql", dsn=demo_db, cwd=tmp_path, env_extra=KEYED)
    assert gate.returncode == 1 and "does not hold" in " ".join(gate.stdout.split())


def test_an_approval_written_into_the_store_is_not_counted(svc, demo_db, fake_slack):
    req = request(svc, "test", {}, "ab" * 32)
    store_write(demo_db, "INSERT INTO dbops.approval_votes (request_id, voter, vote, seal) VALUES (%s, %s, 'approve',"
                         " %s)", (req.id, BOSS, "0" * 64))
    store_write(demo_db, "UPDATE dbops.approval_requests SET status = 'approved' WHERE id = %s", (req.id,))
    applier.apply_approved(svc, svc.approvals.book.get(req.id))  # whatever then starts its apply
    assert svc.approvals.book.get(req.id).status is RequestStatus.FAILED and svc.ran == []
    assert "0 approval(s) the bot sealed, of 1 needed" in refusal(fake_slack, req)


def test_a_request_whose_seal_was_removed_is_refused(svc, demo_db, fake_slack):
    req = request(svc, "test", {}, "ab" * 32)
    store_write(demo_db, "UPDATE dbops.approval_requests SET seal = NULL WHERE id = %s", (req.id,))
    assert approve_and_wait(svc, req).status is RequestStatus.FAILED and svc.ran == []
    assert "does not hold" in refusal(fake_slack, req)


def test_a_sealed_request_is_refused_where_the_key_is_not_held(svc):
    req = request(svc, "test", {}, "ab" * 32)
    assert Sealer(approval_key(KEYED)).problem(svc.approvals.book, req) is not None  # no vote yet
    unkeyed = Sealer(None).problem(svc.approvals.book, req)
    assert unkeyed and f"{SEAL_KEY_VARIABLE} is not set here" in unkeyed
    assert Sealer(approval_key({SEAL_KEY_VARIABLE: KEY + "x"})).problem(svc.approvals.book, req)  # another key


def test_a_key_too_short_to_seal_with_is_refused_at_start(tmp_path):
    (tmp_path / "none.toml").write_text("")
    env = {"DATABASE_URL": "postgresql://u:longenough@127.0.0.1:1/db", SEAL_KEY_VARIABLE: "short",
           "DBOPS_CONFIG": str(tmp_path / "none.toml")}
    with pytest.raises(ConfigError, match=f"{SEAL_KEY_VARIABLE} is too short"):
        load_settings(env)


def test_the_gate_takes_only_what_the_bot_sealed(svc, demo_db, tmp_path):
    (tmp_path / "dbops.toml").write_text("")
    (tmp_path / "up.sql").write_text(COMMENT_UP)
    payload = {"up": COMMENT_UP, "down": None, "apply_by": "pipeline"}
    forged = request(svc, "migration", payload, migration_sha256(COMMENT_UP, None), name="forged")
    store_write(demo_db, "INSERT INTO dbops.approval_votes (request_id, voter, vote) VALUES (%s, %s, 'approve')",
                (forged.id, BOSS))
    store_write(demo_db, "UPDATE dbops.approval_requests SET status = 'approved' WHERE id = %s", (forged.id,))
    gate = dbops("migrate", "gate", "up.sql", dsn=demo_db, cwd=tmp_path, env_extra=KEYED)
    assert gate.returncode == 1 and "0 approval(s) the bot sealed" in " ".join(gate.stdout.split())
    assert svc.approvals.book.get(forged.id).status is RequestStatus.FAILED  # used up: refused once, said once

    real = request(svc, "migration", payload, migration_sha256(COMMENT_UP, None), name="real")
    assert svc.approvals.book.vote(real.id, BOSS, "approve", True, real.created_at)[0].status == "approved"
    unkeyed = dbops("migrate", "gate", "up.sql", dsn=demo_db, cwd=tmp_path)
    assert unkeyed.returncode == 1 and f"{SEAL_KEY_VARIABLE} is not set here" in " ".join(unkeyed.stdout.split())
    passed = dbops("migrate", "gate", "up.sql", "--mark-applied", dsn=demo_db, cwd=tmp_path, env_extra=KEYED)
    assert passed.returncode == 0 and real.code in passed.stdout, passed.stdout + passed.stderr


def test_what_the_gate_decided_is_told_in_the_requests_thread_once(svc, demo_db, tmp_path, fake_slack):
    """The pipeline holds no Slack token: the bot tells, at its next tick, each outcome once."""
    (tmp_path / "dbops.toml").write_text("")
    (tmp_path / "up.sql").write_text(COMMENT_UP)
    payload = {"up": COMMENT_UP, "down": None, "apply_by": "pipeline"}
    forged = request(svc, "migration", payload, migration_sha256(COMMENT_UP, None), name="forged")
    store_write(demo_db, "UPDATE dbops.approval_requests SET status = 'approved' WHERE id = %s", (forged.id,))
    assert dbops("migrate", "gate", "up.sql", dsn=demo_db, cwd=tmp_path, env_extra=KEYED).returncode == 1
    real = request(svc, "migration", payload, migration_sha256(COMMENT_UP, None), name="real")
    svc.approvals.book.vote(real.id, BOSS, "approve", True, real.created_at)
    assert dbops("migrate", "gate", "up.sql", "--mark-applied", dsn=demo_db, cwd=tmp_path,
                 env_extra=KEYED).returncode == 0
    svc.recover_orphans()  # the scheduler's tick
    svc.recover_orphans()
    refused = [t for t in thread(fake_slack, forged) if "pipeline's gate" in t]
    assert len(refused) == 1 and refused[0].startswith(f":no_entry: `{forged.code}` was refused by the pipeline")
    assert "approval(s) the bot sealed" in refused[0]
    applied = [t for t in thread(fake_slack, real) if "applied by the pipeline" in t]
    assert len(applied) == 1 and applied[0].startswith(f":white_check_mark: `{real.code}`")
    assert ("pipeline", "failed") in [(e["action"], e["outcome"]) for e in svc.store.audit_entries(50)
                                      if e["subcommand"] == f"migration {forged.code}"]
