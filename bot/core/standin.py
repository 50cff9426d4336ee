"""A stand-in for the state database while it is unreachable.

The night production is gone (and the state store with it, by default) is the night a restore
must be asked for, approved and run from Slack. Approvals cannot be counted in memory: a vote must
be recorded exactly as the state store records it, by the same SQL. So the bot starts a throwaway
local PostgreSQL (the embedded binaries, sandboxed like every throwaway server) and records only
such requests there. It is temporary by design: once the state database answers again, what is
still pending on the stand-in is void (asked again, it is counted where it lasts), its audit entries
are copied into the state store, and the stand-in is removed."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from handlers.postgres import TemporaryInstance

from .approvals.book import ApprovalBook
from .state.store import StateStore

log = logging.getLogger("dbops.standin")

# Request codes on the stand-in start here, so that `r9001` in a thread cannot be taken for a
# request of the state store, whose codes count from r001.
FIRST_REQUEST_ID = 9001
BUSY = ("approved", "applying")


@dataclass
class StandIn:
    instance: TemporaryInstance
    store: StateStore

    @classmethod
    def start(cls) -> "StandIn":
        instance = TemporaryInstance(purpose="standin-state").start()
        try:
            store = StateStore(instance.dsn(), max_size=4)
            with store.pool.connection() as conn:
                conn.execute(f"ALTER SEQUENCE dbops.approval_requests_id_seq RESTART WITH {FIRST_REQUEST_ID}")
        except Exception:
            instance.stop()
            raise
        log.warning("the state database is unreachable: approval requests are recorded on a stand-in "
                    "until it answers again")
        return cls(instance, store)

    def secrets(self) -> list[str]:
        return self.instance.secrets()

    def busy(self) -> bool:
        """A request approved here is being applied: it finishes where its votes were counted."""
        book = ApprovalBook(self.store)
        return any(book.with_status(status) for status in BUSY)

    def hand_over(self, real: StateStore) -> int:
        """Copies the stand-in's audit entries into the state store; returns how many."""
        entries = self.store.audit_entries(limit=100_000)
        real.import_audit(reversed(entries))
        return len(entries)

    def close(self) -> None:
        try:
            self.store.close()
        finally:
            self.instance.stop()
