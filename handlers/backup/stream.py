"""Streamed backups to S3: what pg_dump writes goes to object storage as it is written, and is never
whole on local disk.

Each piece pg_dump writes (custom format: its standard output; directory format: each data file
once pg_dump has closed it, as a member of one tar stream, toc.dat last) goes through
    the table of contents (custom: pg_restore --list reads the head of the stream, where it is)
    -> encryption (crypto.Encryptor, when configured) -> SHA-256 and size -> StreamedUpload.
A StreamedUpload is an S3 multipart upload fed by `write`: each part is spooled to a hidden
`.<id>.part<N>.partial` file in the backup folder and uploaded by a thread, never more than two
parts on disk (one filling, one uploading): the local disk a backup uses is at most twice the part
size, whatever the database's size. The object exists only once `complete` is called, after
pg_dump, the manifest and the table of contents have all passed; any failure aborts the upload
(AbortMultipartUpload: no object, no billed parts), and the upload of a killed process is aborted
at the next start (cleanup_incomplete), its part files removed.
"""
from __future__ import annotations

import hashlib
import math
import os
import queue
import tarfile
import threading
import time
from pathlib import Path
from typing import BinaryIO

from . import crypto
from .settings import MiB, S3Settings
from .storage import MAX_PARTS, MIN_PART, S3Store, StorageError, _reason

MAX_PART = 5 * 1024 * MiB  # S3's largest part
SPOOLED_PARTS = 2  # part files on disk at once: one being filled, one being uploaded
READ_BLOCK = MiB


def stream_part_size(s3: S3Settings, expected_size: int) -> int:
    """The part size of a streamed upload, whose final size is not known when it starts: large enough
    that 10,000 parts hold s3.stream_max_gb (500 GB by default) and four times the expected archive."""
    needed = max(s3.stream_max_gb * 1000 ** 3, 4 * expected_size)
    part = max(s3.part_size_mb * MiB, math.ceil(needed / MAX_PARTS), MIN_PART)
    return min(MAX_PART, math.ceil(part / MiB) * MiB)


class StreamedUpload:
    """A multipart upload to `key`, fed by `write`; see the module's docstring."""

    def __init__(self, store: S3Store, key: str, part_size: int, spool_dir: Path, spool_name: str) -> None:
        self.store, self.key, self.part_size = store, key, part_size
        self.spool_dir, self.spool_name = spool_dir, spool_name
        self.upload_id: str | None = None
        self.parts: list[dict] = []
        self.sent = 0  # bytes uploaded so far
        self.peak_disk = 0  # the most bytes its part files held at once
        self._on_disk = 0
        self._lock = threading.Lock()  # the disk accounting
        self._files = threading.Lock()  # part files: made, written and closed by abort one at a time
        self._slots = threading.Semaphore(SPOOLED_PARTS)
        self._queue: queue.Queue = queue.Queue()
        self._failed: BaseException | None = None
        self._stopping = threading.Event()
        self._current: tuple[Path, BinaryIO] | None = None
        self._current_size = 0
        self._number = 0
        self._spooled: list[Path] = []
        self._thread = threading.Thread(target=self._upload_parts, name=f"upload-{spool_name}", daemon=True)

    def start(self) -> None:
        try:
            self.upload_id = self.store.client.create_multipart_upload(Bucket=self.store.bucket, Key=self.key)[
                "UploadId"]
        except Exception as exc:
            raise StorageError(f"cannot start the upload to {self.store.url(self.key)}: {_reason(exc)}") from None
        self._thread.start()

    # -- the writing side (one thread) ----------------------------------------------------
    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._current is None:
                self._open_part()
            with self._files:  # abort closes the file: never in the middle of a write
                self._check()
                piece = view[:self.part_size - self._current_size]
                self._current[1].write(piece)
            self._current_size += len(piece)
            self._account(len(piece))
            view = view[len(piece):]
            if self._current_size >= self.part_size:
                self._submit()

    def finish(self) -> None:
        """Sends the last part and waits until every part is uploaded; raises StorageError if one failed."""
        if self._current is not None or self._number == 0:
            if self._current is None:
                self._open_part()  # an upload needs one part, even an empty one
            self._submit()
        self._queue.put(None)
        while self._thread.is_alive():
            self._thread.join(0.2)
        self._check()

    def complete(self) -> None:
        """The object appears, whole: S3's own rename-when-complete."""
        try:
            self.store.client.complete_multipart_upload(Bucket=self.store.bucket, Key=self.key,
                                                        UploadId=self.upload_id, MultipartUpload={"Parts": self.parts})
        except Exception as exc:
            raise self._error(exc) from None

    def abort(self) -> None:
        """No object, no parts: the uploading thread is stopped first, then the upload aborted."""
        with self._files:
            self._stopping.set()
            if self._current is not None:
                self._current[1].close()
                self._current = None
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join()
        if self.upload_id is not None:
            self.store.abort(self.key, self.upload_id)
        self.remove_spooled()

    def remove_spooled(self) -> None:
        for path in self._spooled:
            path.unlink(missing_ok=True)

    def _open_part(self) -> None:
        while not self._slots.acquire(timeout=0.2):
            self._check()  # both slots taken: wait for the upload, and so hold pg_dump back
        if self._number >= MAX_PARTS:
            self._slots.release()
            raise StorageError(f"the archive outgrew {MAX_PARTS:,} parts of {self.part_size // MiB} MiB "
                               f"({self.part_size * MAX_PARTS / 1000 ** 3:,.0f} GB): raise backup.s3.stream_max_gb")
        with self._files:  # no part file is made once abort has begun
            self._check()
            self._number += 1
            path = self.spool_dir / f".{self.spool_name}.part{self._number}.partial"
            self._spooled.append(path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            self._current = (path, os.fdopen(fd, "wb"))
            self._current_size = 0

    def _submit(self) -> None:
        with self._files:
            self._check()
            path, f = self._current
            f.close()
            self._queue.put((self._number, path, self._current_size))
            self._current = None

    def _check(self) -> None:
        if self._failed is not None:
            raise self._error(self._failed)
        if self._stopping.is_set():
            raise StorageError(f"the upload to {self.store.url(self.key)} was stopped")

    def _error(self, exc: BaseException) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        return StorageError(f"upload to {self.store.url(self.key)} failed and was aborted: {_reason(exc)}")

    def _account(self, delta: int) -> None:
        with self._lock:
            self._on_disk += delta
            self.peak_disk = max(self.peak_disk, self._on_disk)

    # -- the uploading thread ---------------------------------------------------------------
    def _upload_parts(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or self._stopping.is_set():
                return
            number, path, size = item
            try:
                if self._failed is None:
                    with open(path, "rb") as body:
                        etag = self.store.client.upload_part(Bucket=self.store.bucket, Key=self.key,
                                                             UploadId=self.upload_id, PartNumber=number, Body=body,
                                                             ContentLength=size)["ETag"]
                    self.parts.append({"ETag": etag, "PartNumber": number})
                    self.sent += size
            except Exception as exc:
                self._failed = exc
            finally:
                path.unlink(missing_ok=True)
                self._account(-size)
                self._slots.release()


class ArchiveStream:
    """The bytes of one archive on their way to storage: the plaintext shown to the table-of-contents
    reader, then encrypted, hashed and uploaded. `write` takes plaintext."""

    def __init__(self, upload: StreamedUpload, key: bytes | None, toc=None) -> None:
        self.upload, self.toc = upload, toc
        self.encryptor = crypto.Encryptor(key) if key is not None else None
        self.digest = hashlib.sha256()
        self.size = 0  # bytes as stored
        self.plain = 0  # bytes pg_dump wrote
        if self.encryptor is not None:
            self._out(self.encryptor.header)

    def write(self, data: bytes) -> int:
        self.plain += len(data)
        if self.toc is not None:
            self.toc.feed(data)
        self._out(self.encryptor.update(data) if self.encryptor is not None else data)
        return len(data)

    def close(self) -> None:
        """The end of the archive: the last encrypted chunk, the last part."""
        if self.encryptor is not None:
            self._out(self.encryptor.finish())
        self.upload.finish()

    def _out(self, data: bytes) -> None:
        if data:
            self.digest.update(data)
            self.size += len(data)
            self.upload.write(data)


class Producer:
    """What feeds an ArchiveStream from a running pg_dump, in its own thread; `error` when it failed."""

    def __init__(self, stream: ArchiveStream) -> None:
        self.stream = stream
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self, proc, dump_path: Path) -> None:
        self._thread = threading.Thread(target=self._guarded, args=(proc, dump_path), name="archive-stream",
                                        daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _guarded(self, proc, dump_path: Path) -> None:
        try:
            self.run(proc, dump_path)
        except BaseException as exc:  # handed to the thread that waits for pg_dump
            self.error = exc

    def run(self, proc, dump_path: Path) -> None:
        raise NotImplementedError

    def finish(self, dump_path: Path) -> None:
        """After pg_dump succeeded: the rest of the archive, then its end."""
        self.stream.close()


class PipeProducer(Producer):
    """A custom-format archive: pg_dump's standard output, as it comes."""

    def run(self, proc, dump_path: Path) -> None:
        while block := proc.stdout.read(READ_BLOCK):
            self.stream.write(block)


class DirectoryProducer(Producer):
    """A directory-format archive (pg_dump -j): each data file goes into one tar stream, and off the
    disk, as soon as pg_dump has closed it; toc.dat, which pg_dump writes last, goes last (`finish`),
    after the table of contents has been checked. Local disk holds only the files being written."""

    def __init__(self, stream: ArchiveStream) -> None:
        super().__init__(stream)
        self.tar: tarfile.TarFile | None = None

    def run(self, proc, dump_path: Path) -> None:
        self.tar = tarfile.open(fileobj=self.stream, mode="w|", format=tarfile.PAX_FORMAT)
        while proc.poll() is None:
            self._sweep(dump_path, _open_files(proc.pid))
            time.sleep(0.2)
        if proc.returncode == 0:
            self._sweep(dump_path, set())

    def _sweep(self, dump_path: Path, still_open: set[str] | None) -> None:
        if still_open is None or not dump_path.is_dir():
            return  # cannot tell which files are finished now: next time
        for entry in sorted(os.scandir(dump_path), key=lambda e: e.name):
            if entry.name != "toc.dat" and entry.is_file() and os.path.realpath(entry.path) not in still_open:
                self._add(Path(entry.path))

    def _add(self, path: Path) -> None:
        with open(path, "rb") as f:
            self.tar.addfile(self.tar.gettarinfo(arcname=path.name, fileobj=f), f)
        path.unlink()

    def finish(self, dump_path: Path) -> None:
        self._add(dump_path / "toc.dat")
        self.tar.close()
        self.stream.close()


def _open_files(pid: int) -> set[str] | None:
    """Files pg_dump and its workers have open; None when that cannot be told now."""
    import psutil

    try:
        leader = psutil.Process(pid)
        processes = [leader, *leader.children(recursive=True)]
        found = {os.path.realpath(f.path) for f in leader.open_files()}
    except psutil.Error:
        return None
    for process in processes[1:]:
        try:
            found.update(os.path.realpath(f.path) for f in process.open_files())
        except psutil.NoSuchProcess:
            continue  # a worker that has exited holds nothing open
        except psutil.Error:
            return None
    return found


class StreamedArchive:
    """One streamed backup's archive: its upload, the chain to it and what feeds that from pg_dump."""

    def __init__(self, store: S3Store, object_key: str, part_size: int, folder: Path, backup_id: str,
                 archive_format: str, key: bytes | None) -> None:
        self.upload = StreamedUpload(store, object_key, part_size, folder, backup_id)
        self.pipes = archive_format == "custom"  # pg_dump writes to its standard output
        self.key = key
        self.toc = None
        self.stream: ArchiveStream | None = None
        self.producer: Producer | None = None

    def start(self) -> None:
        from ..postgres import toc_listing

        self.upload.start()
        self.toc = toc_listing() if self.pipes else None
        self.stream = ArchiveStream(self.upload, self.key, self.toc)
        self.producer = PipeProducer(self.stream) if self.pipes else DirectoryProducer(self.stream)

    @property
    def written(self) -> int:
        return self.stream.plain if self.stream is not None else 0

    def missing(self, dump_path: Path, tables: list[dict]) -> list[str]:
        """The manifest's tables the archive's table of contents has no data for."""
        from ..postgres import PgToolError, missing_table_data, read_listing, tables_without_data

        if self.toc is None:
            return missing_table_data(dump_path, tables)  # a directory archive: its toc.dat is still on disk
        contents = read_listing(self.toc.finish())
        self.toc = None
        if contents.errors:
            raise PgToolError(f"pg_restore cannot read the archive's table of contents: {contents.errors[-1][:400]}")
        return tables_without_data(contents.table_data_lines, tables)

    def seal(self, dump_path: Path) -> tuple[int, str]:
        """The rest of the archive sent; (its size as stored, its SHA-256)."""
        self.producer.finish(dump_path)
        return self.stream.size, self.stream.digest.hexdigest()

    def complete(self) -> None:
        self.upload.complete()

    def discard(self) -> None:
        if self.toc is not None:
            self.toc.stop()
        self.upload.abort()
        if self.producer is not None:
            self.producer.join(30)
        self.upload.remove_spooled()  # any part file the producer made while it was being stopped
