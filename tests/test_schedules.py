"""Scheduled work runs once across replicas: two bot services share one state store and race."""
from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from bot.areas import AREAS
from bot.core.config import Settings
from bot.core.registry import Registry
from bot.core.scheduler import Scheduler
from bot.core.service import BotService
from handlers.target import Target


@pytest.fixture
def replicas(demo_db, fake_slack, tmp_path):
    settings = Settings(targets={"prod": Target("prod", demo_db)}, state_url=demo_db, slack_bot_token="xoxb-test",
                        slack_api_url=fake_slack.url, channel="C0OPS", backup_dir=tmp_path / "backups",
                        sections={"digest": {"time": "09:00"}, "backup": {"schedule": "off"}})
    services = [BotService(settings, Registry(AREAS), start_background=False) for _ in range(2)]
    yield services
    for svc in services:
        svc.close()


def digests(fake_slack):
    return [c for c in fake_slack.calls_to("chat.update") + fake_slack.calls_to("chat.postMessage")
            if c.params["text"].startswith("Daily database digest")]


def race(services, now):
    started: list[list[str]] = []
    barrier = threading.Barrier(len(services))

    def tick(svc):
        barrier.wait()
        started.append(Scheduler(svc, interval=1).tick(now))

    threads = [threading.Thread(target=tick, args=(s,)) for s in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [name for names in started for name in names]


def test_the_digest_posts_once_when_two_schedulers_race_and_then_says_no_change(replicas, fake_slack):
    before = datetime(2026, 11, 25, 8, 59, tzinfo=timezone.utc)
    assert "digest" not in race(replicas, before)
    day1 = datetime(2026, 11, 25, 9, 1, tzinfo=timezone.utc)
    assert race(replicas, day1).count("digest") == 1
    first = fake_slack.wait_for(lambda: digests(fake_slack), what="first digest", timeout=60)
    assert "first digest for this target" in str(first[0].params)
    assert race(replicas, day1.replace(hour=15)).count("digest") == 0  # same day: already posted
    day2 = datetime(2026, 11, 26, 9, 1, tzinfo=timezone.utc)
    assert race(replicas, day2).count("digest") == 1
    second = fake_slack.wait_for(lambda: digests(fake_slack)[1:], what="second digest", timeout=60)
    assert "no change since" in str(second[0].params)
    assert len(digests(fake_slack)) == 2
