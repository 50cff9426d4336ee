"""The procedure of `indexes suggest`: the copy made, the candidates proven on it, the copy removed."""
from __future__ import annotations

import threading
import time
from pathlib import Path

from ...errors import DbopsError
from ...report import Progress, ProgressFn, no_progress
from .copy import AdviceCopy
from .proof import prove
from .result import Advice
from .settings import AdviceSettings
from .workload import Workload


def suggest(workload: Workload, archive: Path, *, backup_id: str, backup_created_at: str | None,
            settings: AdviceSettings, work_dir: Path | None = None, jobs: int = 2,
            progress: ProgressFn = no_progress, cancel: threading.Event | None = None,
            backup_version_num: int | None = None) -> Advice:
    """Prove index candidates for `workload`'s statements on a copy restored from `archive` (ready for
    pg_restore: handlers.backup.materialize). Raises DbopsError when the copy cannot be made (the
    target's major not installed, say), Cancelled."""
    started = time.monotonic()
    advice = Advice(target=workload.target, database=workload.database,
                    source_version=version_text(workload.server_version_num), copy_version="-",
                    backup_id=backup_id, backup_created_at=backup_created_at, min_gain=settings.min_gain,
                    statements_read=len(workload.statements), pgss_message=workload.pgss_message)
    if workload.pgss_message:
        return advice
    copy = AdviceCopy(workload.major, work_dir, jobs, settings.statement_timeout_s, cancel)
    try:
        progress(Progress("suggest", 0.05, f"restoring backup {backup_id} into PostgreSQL {workload.major}"))
        copy.start(archive)
        advice.copy_version = copy.version
        if not copy.table_stats()[0] and workload.tables:
            raise DbopsError(f"the copy of backup {backup_id} holds no table: its restore failed "
                             f"({len(copy.restore_problems)} problem(s); `dbops drill {backup_id}` shows them)")
        found = prove(copy, workload, settings, progress)
    finally:
        copy.stop()
    advice.suggestions, advice.unhelped, advice.skipped = found.suggestions, found.unhelped, found.skipped
    advice.candidates_built = found.candidates_built
    advice.notes = found.notes
    if backup_version_num and backup_version_num // 10000 != workload.major:
        advice.notes.append(f"backup {backup_id} was taken from PostgreSQL {version_text(backup_version_num)}; "
                            f"`{workload.target}` runs {advice.source_version} now, as the copy does")
    if copy.restore_problems:
        advice.notes.append(f"the restore of backup {backup_id} reported {len(copy.restore_problems)} problem(s): "
                            "the copy may lack objects production has (`dbops drill` shows them)")
    advice.timings = {"restore_s": copy.restore_s, "analyze_s": copy.analyze_s,
                      "total_s": time.monotonic() - started}
    progress(Progress("suggest", 1.0, advice.summary))
    return advice


def version_text(num: int) -> str:
    """server_version_num as people write it: 160004 -> "16.4"."""
    return f"{num // 10000}.{num % 10000}" if num >= 100000 else f"{num // 10000}.{num // 100 % 100}.{num % 100}"
