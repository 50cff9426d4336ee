"""The worker pool that runs Slack's work (commands, applies, scheduled runs) off the request path."""
from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

log = logging.getLogger("dbops.jobs")


class JobRunner:
    """The worker pool that runs Slack's work off the request path.

    Work still waiting for a worker when the bot stops is not silently dropped: its
    `on_dropped` tells the person who asked."""

    def __init__(self, workers: int | None = None) -> None:
        workers = workers or int(os.environ.get("DBOPS_WORKERS", "4"))
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dbops-job")
        self._waiting: dict[Future, Callable[[], None]] = {}
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], None], on_dropped: Callable[[], None] | None = None) -> Future:
        future = self.pool.submit(fn)
        if on_dropped is not None:
            with self._lock:
                self._waiting[future] = on_dropped
            future.add_done_callback(self._forget)
        future.add_done_callback(_log_crash)
        return future

    def _forget(self, future: Future) -> None:
        if not future.cancelled():
            with self._lock:
                self._waiting.pop(future, None)

    def shutdown(self) -> None:
        with self._lock:
            waiting = list(self._waiting.items())
        for future, tell in waiting:
            if future.cancel():
                try:
                    tell()
                except Exception:
                    log.exception("could not tell that queued work was dropped")
        self.pool.shutdown(wait=False, cancel_futures=True)


def _log_crash(future: Future) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        log.error("background work crashed: %s", type(exc).__name__, exc_info=exc)
