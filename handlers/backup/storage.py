"""Where archives live: a local folder (files 0600), or S3-compatible object storage.

S3 uploads are streamed multipart uploads: the archive is read one part at a time, never held in
memory; the part size grows with the archive so it stays within S3's 10,000-part limit; a failed
upload is aborted so no half object (nor its billed parts) is left behind. An object only appears
when CompleteMultipartUpload succeeds, which is S3's own "rename when complete".
"""
from __future__ import annotations

import hashlib
import math
import os
import shutil
from pathlib import Path
from typing import Callable

from ..environment import secret_values
from ..errors import ConfigError, DbopsError
from ..target import scrub
from .settings import MiB, S3Settings

MAX_PARTS = 10_000
MIN_PART = 5 * MiB


class StorageError(DbopsError):
    pass


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MiB):
            digest.update(block)
            if on_bytes:
                on_bytes(len(block))
    return digest.hexdigest()


def size_of(path: Path) -> int:
    """Bytes in a file, or in the files of a folder (not its subfolders); 0 when it is gone."""
    try:
        if path.is_dir():
            return sum(e.stat().st_size for e in os.scandir(path) if e.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def remove_path(path: Path) -> None:
    """A file or a folder gone, whatever of it there was."""
    try:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def prepare_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"the backup folder {path} cannot be created: {exc.strerror}; "
                          "set DBOPS_BACKUP_DIR (or backup.dir) to a writable folder") from None
    if not os.access(path, os.W_OK):
        raise ConfigError(f"the backup folder {path} is not writable; "
                          "set DBOPS_BACKUP_DIR (or backup.dir) to a writable folder")
    return path


def part_size_for(size: int, configured: int) -> int:
    """The configured part size, raised (to whole MiB) so that `size` fits in MAX_PARTS parts."""
    needed = math.ceil(size / MAX_PARTS) if size else 0
    part = max(configured, needed, MIN_PART)
    return math.ceil(part / MiB) * MiB


class S3Store:
    def __init__(self, settings: S3Settings, client=None) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self._client = client

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3", endpoint_url=self.settings.endpoint_url, region_name=self.settings.region or "us-east-1",
                aws_access_key_id=self.settings.access_key_id, aws_secret_access_key=self.settings.secret_access_key,
                config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=120,
                              signature_version="s3v4"))
        return self._client

    def key_for(self, target: str, filename: str) -> str:
        return "/".join(p for p in (self.settings.prefix, target, filename) if p)

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def upload(self, path: Path, key: str, on_bytes: Callable[[int], None] | None = None) -> int:
        """Multipart upload of `path` to `key`; aborted on any failure. Returns the bytes uploaded."""
        size = path.stat().st_size
        part_size = part_size_for(size, self.settings.part_size_mb * MiB)
        try:
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        except Exception as exc:
            raise StorageError(f"cannot start the upload to {self.url(key)}: {_reason(exc)}") from None
        try:
            parts = []
            with open(path, "rb") as f:
                number = 1
                while True:
                    body = f.read(part_size)
                    if not body and number > 1:
                        break
                    etag = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                   PartNumber=number, Body=body)["ETag"]
                    parts.append({"ETag": etag, "PartNumber": number})
                    if on_bytes:
                        on_bytes(len(body))
                    if len(body) < part_size:
                        break
                    number += 1
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                  MultipartUpload={"Parts": parts})
        except BaseException as exc:  # also KeyboardInterrupt/cancel: never leave the parts behind
            self.abort(key, upload_id)
            if isinstance(exc, Exception):
                raise StorageError(f"upload to {self.url(key)} failed and was aborted: {_reason(exc)}") from None
            raise
        return size

    def abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception:
            pass  # the bucket's lifecycle rule for incomplete uploads is the last line of defence

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        except Exception as exc:
            raise StorageError(f"cannot write {self.url(key)}: {_reason(exc)}") from None

    def download(self, key: str, dest: Path, on_bytes: Callable[[int], None] | None = None) -> str:
        """Stream `key` into `dest` (0600); returns the SHA-256 of what was received."""
        digest = hashlib.sha256()
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                for block in body.iter_chunks(chunk_size=MiB):
                    out.write(block)
                    digest.update(block)
                    if on_bytes:
                        on_bytes(len(block))
        except Exception as exc:
            raise StorageError(f"cannot download {self.url(key)}: {_reason(exc)}") from None
        return digest.hexdigest()

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except Exception:
            return False

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise StorageError(f"cannot delete {self.url(key)}: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    """A short reason without credentials: botocore messages name the operation and the error code."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return scrub(text, secret_values())[:300]
