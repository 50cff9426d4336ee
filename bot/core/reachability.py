"""Whether each target answers: for `/db status` and the health check."""
from __future__ import annotations

from handlers.errors import DbopsError

from .config import Settings


def _probe(target) -> tuple[str, bool, str]:
    try:
        with target.connect(connect_timeout=5) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        return target.name, True, f"PostgreSQL {version}"
    except DbopsError as exc:
        return target.name, False, str(exc)


def target_reachability(settings: Settings) -> list[tuple[str, bool, str]]:
    """(name, reachable, PostgreSQL version or why not) of every target, probed in parallel."""
    targets = list(settings.targets.values())
    if not targets:
        return []
    from concurrent.futures import ThreadPoolExecutor  # here: every command's declaration imports this module

    with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
        return list(pool.map(_probe, targets))
