"""The state store: migrations, locks across connections, schedule claims, orphaned jobs."""
from __future__ import annotations

import threading

import psycopg

from bot.state import migrate
from bot.state.store import JobLock, StateStore


def test_migrations_apply_once_even_when_two_replicas_start_together(fresh_db):
    results: list[list[str]] = []
    barrier = threading.Barrier(2)

    def start():
        barrier.wait()
        results.append(migrate.apply(fresh_db))

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    applied = sorted(results, key=len)
    assert applied[0] == [] and "0001_core.sql" in applied[1]
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM dbops.schema_version").fetchone()[0] == len(applied[1])


def test_job_lock_is_exclusive_per_target_and_kind(fresh_db):
    migrate.apply(fresh_db)
    first, second, other = JobLock(fresh_db, "prod", "backup"), JobLock(fresh_db, "prod", "backup"), \
        JobLock(fresh_db, "staging", "backup")
    assert first.try_acquire()
    assert not second.try_acquire()
    assert other.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()
    other.release()


def test_schedule_claim_wins_once_across_racing_replicas(fresh_db):
    stores = [StateStore(fresh_db, max_size=2) for _ in range(4)]
    wins: list[bool] = []
    barrier = threading.Barrier(len(stores))

    def claim(store):
        barrier.wait()
        wins.append(store.claim("digest", "2026-11-25"))

    threads = [threading.Thread(target=claim, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False, False, False, True]
    assert stores[0].claim("digest", "2026-11-26")  # the next day is a new slot
    for s in stores:
        s.close()


def test_running_job_without_a_lock_holder_is_marked_failed(fresh_db):
    store = StateStore(fresh_db, max_size=2)
    live_lock = JobLock(fresh_db, "prod", "drill")
    assert live_lock.try_acquire()
    live = store.create_job("prod", "drill", "drill", "U1", "C1")
    dead = store.create_job("prod", "backup", "backup", "U2", "C1")  # nobody holds its lock
    orphans = store.orphaned_jobs()
    assert [j.id for j in orphans] == [dead.id]
    assert store.job(dead.id).status == "failed" and "interrupted" in store.job(dead.id).summary
    assert store.job(live.id).status == "running"
    live_lock.release()
    store.close()
