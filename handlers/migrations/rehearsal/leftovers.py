"""Rehearsal servers and work folders a killed process left behind."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from handlers.postgres import (
    MARKER_FILE,
    private_work_dir,
    remove_leftover_instances,
)

from ..settings import RehearsalSettings
from .result import REHEARSAL_PURPOSE, UNMARKED_WORK_MIN_AGE_S, WORK_PURPOSE

# -- leftovers of killed processes -------------------------------------------------------------

def rehearsal_work_dir(settings: RehearsalSettings):
    """A private 0700 folder for the rehearsal's archive (context manager), marked so that
    `remove_leftover_rehearsals` removes it if the process is killed."""
    return private_work_dir(WORK_PURPOSE, settings.work_dir)


def remove_leftover_rehearsals(work_dir: Path | None = None) -> list[str]:
    """Stop and remove rehearsal servers and work folders that a killed process left (in `work_dir`
    and in the system temp folder); one secret-free line per thing removed, for the channel.

    Work folders made by an older dbops carry no marker: those count as left over once nothing in
    them changed for an hour."""
    said = []
    places = list(dict.fromkeys(Path(p) for p in (work_dir, tempfile.gettempdir()) if p is not None))
    for place in places:
        for path in remove_leftover_instances(place, purpose=REHEARSAL_PURPOSE):
            said.append(f"removed a leftover rehearsal server ({path.name}) from {path.parent}")
        for path in remove_leftover_instances(place, purpose=WORK_PURPOSE):
            said.append(f"removed a leftover rehearsal work folder ({path.name}) from {path.parent}")
        for path in _stale_unmarked_work_dirs(place):
            shutil.rmtree(path, ignore_errors=True)
            said.append(f"removed a leftover rehearsal work folder ({path.name}) from {path.parent}")
    return said


def _stale_unmarked_work_dirs(place: Path) -> list[Path]:
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    now, found = time.time(), []
    for path in sorted(place.glob(f"dbops-{WORK_PURPOSE}-*")):
        try:
            st = os.lstat(path)
            if not os.path.isdir(path) or path.is_symlink() or (uid is not None and st.st_uid != uid):
                continue
            if (path / MARKER_FILE).exists():
                continue  # marked: its owner is alive, or remove_leftover_instances took it
            newest = max([st.st_mtime, *(e.stat(follow_symlinks=False).st_mtime for e in os.scandir(path))])
        except OSError:
            continue
        if now - newest >= UNMARKED_WORK_MIN_AGE_S:
            found.append(path)
    return found
