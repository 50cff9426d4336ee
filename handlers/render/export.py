"""`drill --from render-export`: the newest logical export Render keeps, downloaded, unpacked safely,
restored into a throwaway local instance by the local drill, and verified against production.

An export is hostile input like any file: unpacking refuses absolute paths, `..`, links, devices and
anything past the size and file-count limits before a byte is written outside the folder.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import threading
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable

from ..drill.runner import PreparedArchive, RestoreDrill
from ..drill.settings import DrillSettings
from ..errors import UsageError
from ..postgres import list_archive
from ..report import Progress, ProgressFn, no_progress
from ..target import Target
from ..verification import plan
from .client import RenderClient, parse_time
from .errors import UnsafeArchive
from .settings import RenderSettings

KIND = "render-export"
_PGDMP = b"PGDMP"  # pg_dump's custom format begins so


def safe_extract(archive: Path, into: Path, max_bytes: int, max_files: int) -> Path:
    """Unpack a tar (any compression) into `into`; returns the folder holding toc.dat, or the single
    custom-format file. Raises UnsafeArchive naming the member that is refused."""
    into.mkdir(parents=True, exist_ok=True, mode=0o700)
    total = files = 0
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise UnsafeArchive(f"the export is not a readable tar archive: {exc}") from None
    with tar:
        members = []
        for member in tar:
            name = member.name
            path = PurePosixPath(name)
            if name.startswith(("/", "\\")) or path.is_absolute() or (len(name) > 1 and name[1] == ":"):
                raise UnsafeArchive(f"the export holds {name!r}, an absolute path: refused")
            if ".." in path.parts or "\\" in name or "\x00" in name:
                raise UnsafeArchive(f"the export holds {name!r}, which would land outside its folder: refused")
            if member.issym() or member.islnk():
                raise UnsafeArchive(f"the export holds {name!r}, a link: refused")
            if not (member.isfile() or member.isdir()):
                raise UnsafeArchive(f"the export holds {name!r}, a device, FIFO or other special file: refused")
            files += 1
            total += max(0, member.size)
            if files > max_files:
                raise UnsafeArchive(f"the export holds more than {max_files:,} files ([render] export_max_files)")
            if total > max_bytes:
                raise UnsafeArchive(f"the export unpacks to more than {max_bytes:,} bytes ([render] export_max_bytes)")
            members.append(member)
        root = into.resolve()
        for member in members:
            dest = (into / member.name).resolve()
            if dest != root and root not in dest.parents:
                raise UnsafeArchive(f"the export holds {member.name!r}, which would land outside its folder: refused")
            if member.isdir():
                dest.mkdir(parents=True, exist_ok=True, mode=0o700)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            source = tar.extractfile(member)
            assert source is not None
            with source, open(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
                written = _copy_limited(source, out, member.size)
            if written != member.size:
                raise UnsafeArchive(f"the export's member {member.name!r} is shorter than its header says")
    tocs = [p.parent for p in into.rglob("toc.dat")]
    if len(tocs) == 1:
        return tocs[0]
    dumps = [p for p in into.rglob("*") if p.is_file() and _is_custom_format(p)]
    if not tocs and len(dumps) == 1:
        return dumps[0]
    raise UnsafeArchive(f"the export holds {len(tocs)} directory-format dumps and {len(dumps)} custom-format "
                        "files; expected exactly one dump")


def _copy_limited(source, out, size: int) -> int:
    written = 0
    while written < size:
        chunk = source.read(min(1 << 20, size - written))
        if not chunk:
            break
        out.write(chunk)
        written += len(chunk)
    return written


def _is_custom_format(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(5) == _PGDMP


def restorable_from(download: Path, into: Path, settings: RenderSettings) -> Path:
    """The pg_restore input inside a downloaded export: unpacked when it is a tar, as it is otherwise."""
    if _is_custom_format(download):
        return download
    return safe_extract(download, into, settings.export_max_bytes, settings.export_max_files)


def newest_export(client: RenderClient, postgres_id: str) -> dict[str, Any]:
    exports = [e for e in client.list_exports(postgres_id) if e.get("url")]
    if not exports:
        raise UsageError("Render holds no export of this instance (Render keeps them 7 days): create one in the "
                         "Dashboard (Recovery > Export) first")
    return exports[0]


def mirror_export(download: Path, export: dict[str, Any], target_name: str, backup_dir: Path,
                  upload: Callable[[Path, str], str] | None = None) -> str:
    """Keep the export in the bot's own backup storage (Render deletes it after 7 days); where it went."""
    filename = f"render-export-{_safe_name(str(export.get('id', 'export')))}.download"
    if upload is not None:
        return upload(download, filename)
    folder = backup_dir / target_name / "render-exports"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    dest = folder / filename
    partial = folder / (filename + ".partial")
    shutil.copyfile(download, partial)
    os.chmod(partial, 0o600)
    os.replace(partial, dest)
    return str(dest)


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:80] or "export"


class ExportDrill(RestoreDrill):
    """The local drill's frame, restore, verification plan and report; verified against production instead
    of a manifest (an export has none)."""

    def __init__(self, download: Path, restorable: Path, reference: dict, expected, settings: DrillSettings,
                 manifest: dict, progress: ProgressFn, cancel: threading.Event | None) -> None:
        super().__init__(manifest, download, settings, expected, progress, cancel)
        self.restorable_path = restorable
        self.reference = plan.AgainstInventory(reference, manifest["target"], manifest.get("server_version"))
        self.caller, self.verified_head = plan.RENDER_EXPORT_DRILL, "Verified the restored export"
        self.result.instance_kind = KIND

    def _prepare_archive(self) -> PreparedArchive:
        from ..backup.storage import sha256_file

        sha = sha256_file(self.archive)
        return PreparedArchive(sha, self.restorable_path, list_archive(self.restorable_path))


def run_export_drill(client: RenderClient, postgres_id: str, source: Target, settings: RenderSettings,
                     drill_settings: DrillSettings, expected_indexes: Iterable[Any] | None = None,
                     progress: ProgressFn = no_progress, cancel: threading.Event | None = None,
                     keep: Callable[[Path, dict[str, Any]], str] | None = None):
    """Download the newest export, unpack it, run the local drill on it. `keep(download, export)` stores a
    copy (for [render] mirror_exports) and says where. Returns the DrillResult."""
    export = newest_export(client, postgres_id)
    drill_settings.work_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dbops-render-export-", dir=drill_settings.work_dir))
    try:
        download = work / "export.download"
        progress(Progress("download", None, f"downloading Render export {export.get('id')} "
                                            f"({export.get('createdAt')})"))
        digest = hashlib.sha256()
        size = client.download(export["url"], download, settings.export_max_bytes, digest.update)
        restorable = restorable_from(download, work / "unpacked", settings)
        kept = keep(download, export) if keep is not None else None
        reference = plan.capture_source(source)
        fmt = "custom" if restorable.is_file() else "directory"
        header = list_archive(restorable)  # the export's own major: the local copy runs that one
        manifest = {"backup_id": f"render-export {export.get('id')}", "target": source.name,
                    "created_at": export.get("createdAt"), "integrity_level": "counts",
                    "server_version": header.dumped_from, "pg_dump_version": header.dumped_by,
                    "archive": {"format": fmt, "size": size, "sha256": digest.hexdigest(), "encrypted": False},
                    "tables": reference["tables"], "schema": reference["schema"]}
        drill = ExportDrill(download, restorable, reference, expected_indexes, drill_settings, manifest, progress,
                            cancel)
        created = parse_time(export.get("createdAt"))
        drill.result.procedure.append(
            f"Downloaded Render's newest export {export.get('id')} (created {export.get('createdAt')}, {size:,} bytes)"
            f", computing its SHA-256 ({digest.hexdigest()[:16]}...), and unpacked it safely"
            + (f"; kept a copy at {kept}" if kept else "") + ".")
        result = drill.run()
        if created is not None and result.recovery_point_age_s is None:
            result.recovery_point_age_s = round(result.started_at - created.timestamp(), 1)
        result.backup["render_export_id"] = export.get("id")
        if kept:
            result.backup["mirrored_to"] = kept
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)

