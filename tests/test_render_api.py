"""Render's API through the client and `render status`, against a fake Render that follows the spec
(every answer validated against Render's schemas). Waits are recorded, never slept."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest

from handlers.errors import ConfigError
from handlers.render import (
    RenderAuthError,
    RenderClient,
    RenderError,
    RenderNotFound,
    RenderSettings,
    RenderUnavailable,
    RetryPolicy,
    check_status,
    cleanup_leftover_instances,
    postgres_id_for,
    status_report,
)
from tests.fakes.render_api import FakeRender

KEY = "rnd_S3cr3tK3y\"with'quotes\\and%2F"


class Waits:
    """The injected sleep: remembers every wait, returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def fake():
    server = FakeRender(KEY).start()
    yield server
    server.stop()
    assert server.schema_errors == []  # every answer the fake gave matched Render's spec


@pytest.fixture
def waits():
    return Waits()


def client_for(fake: FakeRender, waits: Waits, key: str = KEY, **retry) -> RenderClient:
    return RenderClient(key, fake.url, timeout_s=retry.pop("timeout_s", 5.0), retry=RetryPolicy(**retry),
                        sleep=waits, jitter=lambda: 0.5)


# -- status ------------------------------------------------------------------------------------

def settings(**section) -> RenderSettings:
    return RenderSettings.from_config(section, env={"RENDER_API_KEY": KEY})


@pytest.mark.parametrize("case", [
    dict(plan="basic_1gb", workspace="hobby", window=timedelta(days=3, hours=1), ok=True, says="reaches back 3 d 1 h"),
    dict(plan="pro_4gb", workspace="professional", window=timedelta(days=7, minutes=5), ok=True, says="7 days"),
    dict(plan="basic_1gb", workspace="professional", window=timedelta(days=3), ok=False,
         says="reaches back only 3 d, the professional plan documents 7 days"),
    dict(plan="free", workspace="hobby", window=None, recovery="NOT_AVAILABLE", ok=False,
         says="free plan, which has no backups at all"),
    dict(plan="basic_1gb", workspace="hobby", window=None, recovery="NOT_AVAILABLE", ok=False, says="NOT_AVAILABLE"),
    dict(plan="basic_1gb", workspace="hobby", window=None, recovery="BACKUP_NOT_READY", ok=False,
         says="BACKUP_NOT_READY"),
], ids=["hobby-ok", "professional-ok", "professional-short-window", "free-instance", "not-available",
        "backup-not-ready"])
def test_status_on_each_plan_kind(fake, waits, case):
    db = fake.add_instance("asidenote-db", plan=case["plan"], recovery=case.get("recovery", "AVAILABLE"),
                           window=case["window"])
    found = check_status(client_for(fake, waits), db["id"], settings(workspace_plan=case["workspace"]))
    report = status_report(found, "prod")
    assert found.ok is case["ok"] and report.outcome.exit_code == (0 if case["ok"] else 1)
    assert case["says"] in found.line, found.line
    text = str(report.to_json())
    for shown in ("asidenote-db", case["plan"], "frankfurt", "15 GB", "not_suspended"):
        assert shown in text


def test_overridden_window_table_and_expected_exports(fake, waits):
    db = fake.add_instance("asidenote-db", window=timedelta(days=5))
    client = client_for(fake, waits)
    # Render changed its plans: the table in settings says so.
    assert not check_status(client, db["id"], settings(recovery_window_days={"hobby": 6})).ok
    assert check_status(client, db["id"], settings(recovery_window_days={"hobby": 4})).ok
    expecting = settings(exports_expected=True, export_max_age_days=2)
    found = check_status(client, db["id"], expecting)
    assert not found.ok and "no logical export in the last 2 days" in found.line
    fake.add_export(db["id"], b"old", age=timedelta(days=3))
    assert not check_status(client, db["id"], expecting).ok
    fake.add_export(db["id"], b"new", age=timedelta(hours=5))
    found = check_status(client, db["id"], expecting)
    assert found.ok and "newest export 5 h old" in found.line
    # The signed download links are never in the report.
    assert "X-Amz-Signature" not in str(status_report(found, "prod").to_json())


# -- pagination ------------------------------------------------------------------------------

def test_pagination_across_pages_and_leftover_drill_instances_on_the_last_page(fake, waits):
    for i in range(228):
        fake.add_instance(f"service-db-{i:03d}")
    fake.add_instance("dbops-drill-20261101-010101-abcdef", status="available")
    fake.add_instance("dbops-drill-20261102-010101-123456", status="creating")
    fake.add_instance("not-dbops-drill-x")
    client = client_for(fake, waits)
    names = [p["name"] for p in client.list_postgres()]
    assert len(names) == 231 and names[0] == "service-db-000" and names[-1] == "not-dbops-drill-x"
    pages = fake.requests_to("GET", "/postgres")
    assert [p.query.get("limit") for p in pages] == [["100"]] * 3
    assert "cursor" not in pages[0].query
    assert pages[1].query["cursor"] == [f"cur-{fake_ids(fake)[99]}"]
    assert pages[2].query["cursor"] == [f"cur-{fake_ids(fake)[199]}"]

    said, alarms = cleanup_leftover_instances(client, retries=2, sleep=waits)
    assert alarms == [] and len(said) == 2 and all("deleted a leftover Render drill instance" in s for s in said)
    left = {d["name"] for d in fake.instances.values()}
    assert "not-dbops-drill-x" in left and not any(n.startswith("dbops-drill-") for n in left)


def fake_ids(fake: FakeRender) -> list[str]:
    return list(fake.instances)  # the order the fake lists them in


def test_an_exact_page_of_100_asks_once_more_and_stops_on_the_empty_page(fake, waits):
    for i in range(100):
        fake.add_instance(f"db-{i}")
    assert len(client_for(fake, waits).list_postgres()) == 100
    assert len(fake.requests_to("GET", "/postgres")) == 2


def test_name_filter_follows_the_spec_form_style(fake, waits):
    fake.add_instance("a")
    fake.add_instance("b")
    fake.add_instance("c")
    found = client_for(fake, waits).list_postgres(["a", "c"])
    assert sorted(p["name"] for p in found) == ["a", "c"]
    assert fake.requests_to("GET", "/postgres")[0].query["name"] == ["a,c"]


# -- rate limits, server errors, hangs ---------------------------------------------------------

def test_a_429_storm_waits_as_each_answer_says_with_jitter_then_succeeds(fake, waits):
    db = fake.add_instance("asidenote-db")
    fake.fail_next("GET", "/postgres/{postgresId}", 429, times=3, **{"Retry-After": "3"})
    fake.fail_next("GET", "/postgres/{postgresId}", 429, times=3, **{"Ratelimit-Reset": "7",
                                                                    "Ratelimit-Remaining": "0"})
    fake.fail_next("GET", "/postgres/{postgresId}", 429, times=1)  # no header at all: a minute
    fake.fail_next("GET", "/postgres/{postgresId}", 429, times=1, **{"Retry-After": "9999"})  # capped
    assert client_for(fake, waits).get_postgres(db["id"])["name"] == "asidenote-db"
    assert waits.waits == [3.5, 3.5, 3.5, 7.5, 7.5, 7.5, 60.5, 120.5]
    assert len(fake.requests_to("GET", "/postgres/{postgresId}")) == 9


def test_a_429_storm_that_never_ends_is_a_clear_error(fake, waits):
    db = fake.add_instance("asidenote-db")
    fake.fail_next("GET", "/postgres/{postgresId}", 429, times=50, **{"Ratelimit-Reset": "2"})
    with pytest.raises(RenderUnavailable, match="kept rate-limiting GET /postgres/{id} \\(5 answers of 429\\)"):
        client_for(fake, waits, rate_limit_retries=4).get_postgres(db["id"])
    assert waits.waits == [2.5] * 4


def test_server_errors_back_off_then_give_a_clear_error(fake, waits):
    db = fake.add_instance("asidenote-db")
    fake.fail_next("GET", "/postgres/{postgresId}/recovery", 503, times=2)
    client = client_for(fake, waits, server_retries=3, backoff_base_s=2.0)
    assert client.recovery_info(db["id"])["recoveryStatus"] == "AVAILABLE"
    assert waits.waits == [2.5, 4.5]
    fake.fail_next("GET", "/postgres/{postgresId}/recovery", 500, times=10)
    with pytest.raises(RenderUnavailable, match="HTTP 500 after 4 tries.*status.render.com"):
        client.recovery_info(db["id"])
    assert waits.waits[2:] == [2.5, 4.5, 8.5]


def test_a_hanging_answer_times_out_and_is_retried(fake, waits):
    db = fake.add_instance("asidenote-db")
    fake.hang_next(1)  # this answer never comes
    client = client_for(fake, waits, timeout_s=0.5)
    assert client.get_postgres(db["id"])["id"] == db["id"]
    assert len(waits.waits) == 1
    fake.hang_next(3)
    with pytest.raises(RenderUnavailable, match="did not answer GET /postgres/{id} \\(timed out\\) after 3 tries"):
        client_for(fake, waits, timeout_s=0.5, server_retries=2).get_postgres(db["id"])


def test_a_recovery_request_is_never_repeated_after_a_server_error(fake, waits):
    db = fake.add_instance("asidenote-db")
    fake.fail_next("POST", "/postgres/{postgresId}/recovery", 500)
    with pytest.raises(RenderUnavailable):
        client_for(fake, waits).start_recovery(db["id"], datetime.now(timezone.utc) - timedelta(minutes=15), "x")
    assert len(fake.requests_to("POST", "/postgres/{postgresId}/recovery")) == 1 and waits.waits == []


# -- what to check -----------------------------------------------------------------------------

def test_401_403_404_say_what_to_check_and_never_the_key(fake, waits, caplog):
    caplog.set_level(logging.DEBUG)
    db = fake.add_instance("asidenote-db")
    with pytest.raises(RenderAuthError) as wrong_key:
        client_for(fake, waits, key="rnd_WrongKeyWrongKey").get_postgres(db["id"])
    assert "check RENDER_API_KEY" in str(wrong_key.value) and "rnd_WrongKey" not in str(wrong_key.value)
    fake.fail_next("POST", "/postgres/{postgresId}/recovery", 403)  # the spec has 403 only for the POSTs
    with pytest.raises(RenderAuthError, match="workspace"):
        client_for(fake, waits).start_recovery(db["id"], datetime.now(timezone.utc) - timedelta(minutes=15), "x")
    with pytest.raises(RenderNotFound, match="dpg-nope.*check RENDER_POSTGRES_ID"):
        client_for(fake, waits).get_postgres("dpg-nope")
    with pytest.raises(RenderError, match="not a Render instance id"):
        client_for(fake, waits).get_postgres("../services")
    assert not client_for(fake, waits).delete_postgres("dpg-gone")  # already gone is no error
    with pytest.raises(RenderAuthError, match="RENDER_API_KEY is not set"):
        RenderClient("", fake.url)
    with pytest.raises(RenderAuthError, match="non-ASCII") as odd:
        RenderClient("rnd_ünïcödé_key\n", fake.url)
    assert "ünïcödé" not in str(odd.value)
    assert KEY not in caplog.text and "WrongKey" not in caplog.text
    assert KEY not in repr(client_for(fake, waits))


def test_settings_are_checked_and_the_instance_id_comes_from_the_target_or_the_environment():
    with pytest.raises(ConfigError, match="render.workspace_plan must be one of"):
        settings(workspace_plan="gold")
    with pytest.raises(ConfigError, match="render.wait_limit"):
        settings(wait_limits=3)
    with pytest.raises(ConfigError, match="render.restore_minutes_ago \\(5\\) must be at least"):
        settings(restore_minutes_ago=5)
    with pytest.raises(ConfigError, match="recovery_window_days"):
        settings(recovery_window_days={"hobby": "three"})
    with pytest.raises(ConfigError, match="RENDER_API_URL"):
        RenderSettings.from_config({}, env={"RENDER_API_URL": "ftp://x"})
    assert postgres_id_for("prod", {}, "prod", env={"RENDER_POSTGRES_ID": "dpg-env"}) == "dpg-env"
    assert postgres_id_for("prod", {"render_postgres_id": "dpg-own"}, "prod",
                           env={"RENDER_POSTGRES_ID": "dpg-env"}) == "dpg-own"
    with pytest.raises(ConfigError, match=r"set render_postgres_id under \[targets.staging\]"):
        postgres_id_for("staging", {}, "prod", env={"RENDER_POSTGRES_ID": "dpg-env"})
