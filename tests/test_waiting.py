"""Slack work waiting for a worker is recorded, so that a killed process's requesters are told: and
of "the work starts" and "its requester is told it will not run", exactly one happens. Two bot
services on one real state store stand for two processes; the kill itself is in
tests/test_truth.py::test_work_still_queued_when_the_bot_is_killed_is_told_at_the_next_start."""
from __future__ import annotations

import threading

import pytest

from bot.areas import AREAS
from bot.core.config import Settings
from bot.core.registry import Registry
from bot.core.service import BotService
from handlers.target import Target


@pytest.fixture
def services(fresh_db, fake_slack, monkeypatch):
    monkeypatch.setenv("DBOPS_WORKERS", "1")
    settings = Settings(targets={"prod": Target("prod", fresh_db)}, state_url=fresh_db, slack_bot_token="xoxb-test",
                        slack_api_url=fake_slack.url, channel="C0OPS")
    made = [BotService(settings, Registry(AREAS), start_background=False) for _ in range(2)]
    yield made
    for svc in made:
        svc.close()


def _age_every_row(svc) -> None:
    with svc.store.pool.connection() as conn:
        conn.execute("UPDATE dbops.queued_work SET beat_at = now() - interval '1 hour'")


def ran(svc, command: str) -> list[dict]:
    """The audit log's entries of `command` run for a person (every run is audited)."""
    return [e for e in svc.store.audit_entries(500) if e["subcommand"] == command and e["actor"] == "U0BOB"]


def told(fake_slack, command: str) -> list:
    return [c for c in fake_slack.calls_to("chat.postEphemeral")
            if f"before `{command}` could start" in c.params["text"]]


def test_work_told_lost_by_another_process_never_runs_and_is_told_once(services, fake_slack):
    first, second = services
    gate = threading.Event()
    first.runner.submit(gate.wait)  # its one worker is busy
    cmd, args = first.registry.parse("status", "slack", prog="/db")
    first.submit_command(cmd, args, actor="U0BOB", channel="C0OPS", user="U0BOB")
    _age_every_row(first)  # as if `first` had been killed: nothing beats its row
    second.recover_orphans()
    assert [c.params["user"] for c in told(fake_slack, "status")] == ["U0BOB"]
    gate.set()  # `first` was only slow: its worker now finds the row gone and does not run the command
    first.runner.pool.shutdown(wait=True)
    assert ran(first, "status") == []
    second.recover_orphans()
    assert len(told(fake_slack, "status")) == 1  # told once


def test_a_beaten_row_is_not_abandoned_and_started_work_leaves_no_row(services, fake_slack):
    first, second = services
    gate = threading.Event()
    first.runner.submit(gate.wait)
    cmd, args = first.registry.parse("status", "slack", prog="/db")
    first.submit_command(cmd, args, actor="U0BOB", channel="C0OPS", user="U0BOB")
    _age_every_row(first)
    first.waiting.beat()  # its process is alive: the scheduler tick beats the row
    second.recover_orphans()
    assert told(fake_slack, "status") == []
    gate.set()
    first.runner.pool.shutdown(wait=True)
    with first.store.pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM dbops.queued_work").fetchone()["n"] == 0
    assert len(ran(first, "status")) == 1
