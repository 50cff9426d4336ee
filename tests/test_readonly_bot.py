"""Read-only roles through the bot: request, approval by reaction, hand-over to the requester only,
rotate, check, drop, the status line; and nothing the bot posted, logged or stored holds a password."""
from __future__ import annotations

import json
import logging
import re
import threading

import psycopg
import pytest

from bot.areas import AREAS
from bot.core.config import Settings
from bot.core.registry import Invocation, Registry
from bot.core.service import BotService
from handlers import readonly
from handlers.target import Target

from .test_applier import approve_and_wait
from .test_readonly import OWNER, hand_to_owner, new_name, owner_dsn, owner_password  # noqa: F401

BOSS, BOSS2 = "U0BOSS", "U0BOSS2"
URL = re.compile(r"postgresql://[^\s\"\\]+")


@pytest.fixture
def svc(pg_server, demo_db, fresh_db, fake_slack, owner_password, caplog):
    # Every record at DEBUG, raw (before the scrubbing formatter): nothing the bot logs may hold a secret.
    # Slack's client logs whole request bodies at DEBUG; the bot's logging keeps it at WARNING (bot/core/logs.py).
    caplog.set_level(logging.DEBUG)
    logging.getLogger("slack_sdk").setLevel(logging.WARNING)
    db = hand_to_owner(pg_server, demo_db)
    settings = Settings(targets={"prod": Target("prod", owner_dsn(pg_server, db, owner_password))}, state_url=fresh_db,
                        slack_bot_token="xoxb-test", slack_api_url=fake_slack.url, channel="C0OPS",
                        approvers=frozenset({BOSS, BOSS2}), sections={"approvals": {"required": 1}})
    service = BotService(settings, Registry(AREAS), start_background=False)
    yield service
    service.close()


def run(svc, text: str, user: str = BOSS) -> None:
    cmd, args = svc.registry.parse(text, "slack", prog="/db")
    svc.run_command(cmd, args, actor=user, channel="C0OPS", user_for_errors=user)


def approve(svc, fake_slack, code_text: str, approver: str = BOSS2) -> None:
    svc.approvals.post_unposted()
    req = [r for r in svc.approvals.book.recent() if r.name == code_text][0]
    approve_and_wait(svc, svc.approvals.book.get(req.id), approver)


def handed_over(fake_slack) -> list[tuple[str, str, str]]:
    """(method, user or channel, url) of each message that carried a connection string."""
    found = []
    for call in fake_slack.calls:
        for url in URL.findall(json.dumps(call.params)):
            found.append((call.method, call.params.get("user") or call.params.get("channel"), url))
    return found


def test_create_by_approval_hands_the_connection_string_to_the_requester_only_and_leaks_it_nowhere(
        svc, fake_slack, caplog, pg_server, owner_password):
    name = new_name()
    run(svc, f"readonly create {name}")
    req = [r for r in svc.approvals.book.recent() if r.kind == "readonly"][0]
    assert req.status == "pending" and req.requested_by == BOSS and "password" not in json.dumps(req.payload)
    assert not handed_over(fake_slack)

    svc.approvals.post_unposted()
    own = {"user": BOSS, "reaction": "white_check_mark",
           "item": {"type": "message", "channel": "C0OPS", "ts": svc.approvals.book.get(req.id).message_ts}}
    assert svc.approvals.on_reaction(own, "EvOwn", added=True) == "own request"
    approve(svc, fake_slack, f"create {name}")
    assert svc.approvals.book.get(req.id).status == "applied"
    sent = handed_over(fake_slack)
    assert [(m, u) for m, u, _ in sent] == [("chat.postEphemeral", BOSS)]  # once, to the requester, ephemeral
    first_url = sent[0][2]
    with psycopg.connect(first_url) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == name

    run(svc, f"readonly rotate {name}")
    sent = handed_over(fake_slack)
    assert [(m, u) for m, u, _ in sent] == [("chat.postEphemeral", BOSS)] * 2
    second_url = sent[1][2]
    run(svc, f"readonly check {name}")
    run(svc, "readonly list")
    run(svc, "status")
    texts = " ".join(fake_slack.texts())
    assert "proven read-only" in texts and name in texts

    run(svc, f"readonly drop {name}")
    approve(svc, fake_slack, f"drop {name}")
    with svc.store.pool.connection() as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is None

    passwords = [psycopg.conninfo.conninfo_to_dict(u)["password"] for u in (first_url, second_url)]
    db_passwords = [owner_password, pg_server._password]
    deliveries = {json.dumps(c.params) for c in fake_slack.calls if URL.search(json.dumps(c.params))}
    posted = [c.raw for c in fake_slack.calls if json.dumps(c.params) not in deliveries]
    with svc.store.pool.connection() as conn:
        stored = json.dumps([conn.execute(f"SELECT json_agg(t) FROM dbops.{table} t").fetchone()["json_agg"]
                             for table in ("jobs", "audit_log", "approval_requests", "readonly_roles")], default=str)
    everything = "\n".join(posted) + caplog.text + stored
    assert "readonly create" in stored and name in everything  # the search looks at the real records
    for secret in passwords + db_passwords:
        assert secret not in everything
    for password in passwords:  # the delivery messages hold the new role's password, nothing else
        assert all(p not in d for d in deliveries for p in db_passwords)


@pytest.fixture
def terminal_role(svc, monkeypatch, tmp_path) -> str:
    """A read-only role made from a terminal, and a terminal set up to run `dbops` on its target."""
    name = new_name()
    target = svc.settings.targets["prod"]
    report, _ = readonly.create_role(target, name, readonly.ReadonlySettings(), readonly.RoleBook(svc.store.dsn),
                                     requested_by="cli:ops")
    assert report.ok
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", target.dsn)
    monkeypatch.setenv("DBOPS_STATE_URL", svc.store.dsn)
    monkeypatch.setenv("DBOPS_DOTENV", str(tmp_path / "none.env"))
    return name


def test_a_terminal_rotate_prints_the_connection_string_once_and_stores_none(svc, terminal_role, capsys, caplog):
    from bot.frontends import cli

    name = terminal_role
    assert cli.main(["readonly", "rotate", name]) == 0
    out, err = capsys.readouterr()
    urls = URL.findall(out)
    assert len(urls) == 1 and not URL.findall(err)
    password = psycopg.conninfo.conninfo_to_dict(urls[0])["password"]
    assert out.count(password) == 1
    with psycopg.connect(urls[0]) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == name
    with svc.store.pool.connection() as conn:
        stored = json.dumps(conn.execute("SELECT json_agg(t) FROM dbops.jobs t").fetchone()["json_agg"], default=str)
    assert "readonly rotate" in stored and password not in stored and password not in caplog.text


def test_a_terminal_rotate_with_format_json_prints_only_json_and_the_string_on_stderr(terminal_role, capsys):
    from bot.frontends import cli

    name = terminal_role
    assert cli.main(["readonly", "rotate", name, "--format", "json"]) == 0
    out, err = capsys.readouterr()
    shown = json.loads(out)  # nothing but the report
    assert "standard error" in shown["summary"] and not URL.findall(out)
    urls = URL.findall(err)
    assert len(urls) == 1
    with psycopg.connect(urls[0]) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == name


def test_the_terminal_requester_must_be_mapped_to_a_slack_user(svc):
    from handlers.errors import UsageError

    cmd, args = svc.registry.parse(f"readonly create {new_name()}", "cli")
    inv = Invocation(command=cmd, args=args, settings=svc.settings, actor="cli:ops", registry=svc.registry,
                     store=svc.store, front_end="cli")
    with pytest.raises(UsageError, match=r"\[identities\]"):
        cmd.run(inv)


def test_hostile_name_is_refused_before_any_request(svc, fake_slack):
    run(svc, 'readonly create "x; DROP TABLE \\"Users\\""')
    assert not [r for r in svc.approvals.book.recent() if r.kind == "readonly"]
    assert any("not a valid role name" in t for t in fake_slack.texts("chat.postEphemeral"))
