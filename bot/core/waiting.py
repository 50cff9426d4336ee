"""Slack work acknowledged but still waiting for a worker, recorded in the state store.

A graceful stop tells the requesters of what is still waiting (workers.JobRunner). A killed
process (SIGKILL, out of memory, a lost machine) tells nobody, so each waiting command also has a
row that its process beats: once the beats stop, whichever process recovers next tells the
requester and removes the row. Exactly one of "the worker starts it" and "its requester is told
it will not run" happens: both first take the row away, and only the one that removes it goes on.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from .state.store import StateStore

log = logging.getLogger("dbops.jobs")


def not_run_text(command: str, why: str) -> str:
    return f":warning: dbops stopped ({why}) before `{command}` could start; nothing was done. Run it again."


class WaitingWork:
    def __init__(self, store: Callable[[], StateStore | None]) -> None:
        self._store = store  # the state store now: None while it is unreachable
        self._beaten: set[int] = set()  # rows this process keeps alive
        self._to_remove: set[int] = set()  # started, but the row could not be removed yet
        self._lock = threading.Lock()

    def record(self, command: str, requested_by: str, channel: str | None, slack_user: str | None) -> int | None:
        """The row of one waiting command; None without a state store (a graceful stop still tells)."""
        store = self._store()
        if store is None:
            return None
        try:
            work_id = store.queue_work(command, requested_by, channel, slack_user)
        except Exception:
            log.exception("could not record waiting work %s; a killed process would not tell about it", command)
            return None
        with self._lock:
            self._beaten.add(work_id)
        return work_id

    def take(self, work_id: int | None) -> bool:
        """True when this caller may go on (start the work, or tell that it will not run): it
        removed the row, or there was none. False: another process told the requester already."""
        if work_id is None:
            return True
        store = self._store()
        try:
            taken = store.unqueue(work_id) if store is not None else None
        except Exception:
            taken = None
        if taken is None:  # kept beaten and removed at a later beat: never told as lost
            with self._lock:
                self._to_remove.add(work_id)
            return True
        with self._lock:
            self._beaten.discard(work_id)
        return taken

    def beat(self) -> None:
        """Every scheduler tick: this process's rows stay fresh; rows of started work are removed."""
        store = self._store()
        if store is None:
            return
        with self._lock:
            removing, beaten = list(self._to_remove), list(self._beaten)
        try:
            for work_id in removing:
                store.unqueue(work_id)
                with self._lock:
                    self._to_remove.discard(work_id)
                    self._beaten.discard(work_id)
            if beaten:
                store.beat_queued(beaten)
        except Exception:
            log.exception("could not beat the waiting work")

    def abandoned(self, stale_after_s: float) -> list[dict]:
        """Rows whose process stopped beating them, removed: each to be told once."""
        store = self._store()
        return store.abandoned_work(stale_after_s) if store is not None else []
