"""The state store: migrations, locks across connections, schedule claims, orphaned jobs."""
from __future__ import annotations

import threading

import psycopg

from bot.core.state import migrate
from bot.core.state import store as store_module
from bot.core.state.store import JobLock, StateStore


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
    wins: list[int | None] = []
    barrier = threading.Barrier(len(stores))

    def claim(store):
        barrier.wait()
        wins.append(store.claim("digest", "2026-11-25"))

    threads = [threading.Thread(target=claim, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins, key=lambda w: w or 0) == [None, None, None, 1]
    assert stores[0].claim("digest", "2026-11-26") == 1  # the next day is a new slot
    for s in stores:
        s.close()


def _age_heartbeat(dsn: str, job_id: int, seconds: float) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE dbops.jobs SET heartbeat_at = now() - make_interval(secs => %s) WHERE id = %s",
                     (seconds, job_id))


def test_running_job_without_a_lock_holder_and_heartbeat_is_marked_failed(fresh_db):
    store = StateStore(fresh_db, max_size=2)
    live_lock, live = store.start_job("prod", "drill", "drill", "U1", "C1")
    dead_lock, dead = store.start_job("prod", "backup", "backup", "U2", "C1")
    dead_lock.release()  # its process died: the server let the lock go
    assert store.orphaned_jobs() == []  # its heartbeat is still fresh: it may be re-taking its lock
    _age_heartbeat(fresh_db, dead.id, store_module.STALE_AFTER_S + 1)
    _age_heartbeat(fresh_db, live.id, store_module.STALE_AFTER_S + 1)  # stale, but its lock is held
    orphans = store.orphaned_jobs()
    assert [j.id for j in orphans] == [dead.id]
    assert store.job(dead.id).status == "failed" and "interrupted" in store.job(dead.id).summary
    assert store.job(live.id).status == "running"
    live_lock.release()
    store.close()


def test_a_second_start_sees_the_winners_row_never_a_bare_lock(fresh_db):
    """The lock and the job's row are one step: a loser always learns who runs the job."""
    store = StateStore(fresh_db, max_size=8)
    for round_ in range(5):
        results = []
        barrier = threading.Barrier(4)

        def start(user):
            barrier.wait()
            results.append(store.start_job("prod", f"backup{round_}", "backup", user, "C1"))

        threads = [threading.Thread(target=start, args=(f"U{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [(lock, job) for lock, job in results if lock is not None]
        losers = [job for lock, job in results if lock is None]
        assert len(winners) == 1 and len(losers) == 3
        assert all(job is not None and job.id == winners[0][1].id for job in losers)
        winners[0][0].release()
    store.close()


def test_a_job_whose_lock_connection_dies_keeps_its_lock_and_is_not_an_orphan(fresh_db):
    store = StateStore(fresh_db, max_size=2)
    lock, job = store.start_job("prod", "backup", "backup", "U1", "C1")
    with psycopg.connect(fresh_db, autocommit=True) as admin:  # idle_session_timeout, a failover, a proxy cut
        pid = lock.conn.info.backend_pid
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    # Between the cut and the next heartbeat, nobody may start the same job...
    assert store.start_job("prod", "backup", "backup", "U2", "C1")[0] is None
    assert store.orphaned_jobs() == []
    # ...and the heartbeat takes the lock back on a new connection.
    assert store.beat(lock, job.id)
    assert not lock.lost
    assert store.start_job("prod", "backup", "backup", "U2", "C1")[0] is None
    assert store.job(job.id).status == "running"
    lock.release()
    store.close()


def test_a_job_that_lost_its_lock_to_another_process_knows_it(fresh_db):
    store = StateStore(fresh_db, max_size=2)
    lock, job = store.start_job("prod", "backup", "backup", "U1", "C1")
    lock.conn.close()  # the connection is gone, and before the heartbeat runs...
    other = JobLock(fresh_db, "prod", "backup")
    assert other.try_acquire()  # ...another process has the lock
    assert not store.beat(lock, job.id)
    assert lock.lost
    other.release()
    store.close()


def test_a_scheduled_slot_whose_run_died_or_failed_is_claimed_again_up_to_the_limit(fresh_db):
    store = StateStore(fresh_db, max_size=2)
    assert store.claim("backup", "2026-12-01") == 1
    assert store.claim("backup", "2026-12-01") is None  # running, heartbeat fresh
    with psycopg.connect(fresh_db, autocommit=True) as conn:  # its process died: no heartbeat since
        conn.execute("UPDATE dbops.schedule_claims SET claimed_at = now() - interval '1 hour'")
    assert store.claim("backup", "2026-12-01") == 2
    store.finish_claim("backup", "2026-12-01", "failed", "RuntimeError")
    assert store.claim("backup", "2026-12-01") is None  # failed just now: wait before the retry
    assert store.claim("backup", "2026-12-01", retry_after_s=0) == 3
    store.finish_claim("backup", "2026-12-01", "failed", "RuntimeError")
    assert store.claim("backup", "2026-12-01", retry_after_s=0) is None  # three tries, then a person
    assert store.claim("digest", "2026-12-01") == 1
    store.finish_claim("digest", "2026-12-01", "succeeded")
    assert store.claim("digest", "2026-12-01", retry_after_s=0) is None
    store.close()
