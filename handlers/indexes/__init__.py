"""Index review (`/db indexes`) and the daily digest's content.

review() reads the target's catalog in a fixed number of queries; take_snapshot()
stores one day's scan counters in the state store; build_digest() compares a
review with the previous digest; claim_digest() lets one replica post per day.
"""
from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # at run time each name is imported on first use: see handlers/lazy.py
    from .digest import Digest, build_digest, claim_digest
    from .history import Snapshot, take_snapshot
    from .review import IndexReview, review
    from .settings import ExpectedIndex, IgnoreEntry, IndexSettings

__all__ = ["Digest", "ExpectedIndex", "IgnoreEntry", "IndexReview", "IndexSettings", "Snapshot",
           "build_digest", "claim_digest", "review", "take_snapshot"]

__getattr__, __dir__ = lazy_exports(__name__, {
    ".digest": ("Digest", "build_digest", "claim_digest"),
    ".history": ("Snapshot", "take_snapshot"),
    ".review": ("IndexReview", "review"),
    ".settings": ("ExpectedIndex", "IgnoreEntry", "IndexSettings"),
})
