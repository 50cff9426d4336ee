"""Encryption at rest: the chunked AES-GCM format, and encrypted backups end to end."""
from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import pytest

from bot.core.state import migrate
from handlers.backup import BackupCatalog, BackupSettings, crypto, materialize, take_backup, verify_backup
from handlers.backup.verify import Unrestorable
from handlers.report import Outcome
from handlers.target import Target

KEY = bytes(range(32))


def seal(data: bytes, key: bytes = KEY, chunk: int = 1024) -> bytes:
    out = io.BytesIO()
    crypto.encrypt_stream(io.BytesIO(data), out, key, chunk=chunk)
    return out.getvalue()


def unseal(blob: bytes, key: bytes = KEY) -> bytes:
    out = io.BytesIO()
    crypto.decrypt_stream(io.BytesIO(blob), out, key)
    return out.getvalue()


def plaintext(size: int) -> bytes:
    """Fixed, row-like bytes (repetitive, as dumps are: the worst case for leaking runs)."""
    rows = b"".join(b"%06d\tasidenote\tnote title %d\n" % (i, i % 7) for i in range(size // 20 + 1))
    return rows[:size]


def plaintext_runs(data: bytes, blob: bytes, run: int = 8) -> list[bytes]:
    """Runs of `run` plaintext bytes found in the ciphertext."""
    return [data[i:i + run] for i in range(len(data) - run + 1) if data[i:i + run] in blob]


@pytest.mark.parametrize("size", [0, 1, 8, 1023, 1024, 1025, 4096, 5000])
def test_round_trip_sizes(size):
    data = plaintext(size)
    blob = seal(data)
    assert unseal(blob) == data
    chunks = max(1, -(-size // 1024))
    assert len(blob) == crypto.HEADER_LEN + size + chunks * crypto.TAG
    assert plaintext_runs(data, blob[crypto.HEADER_LEN:]) == []


def test_any_flipped_byte_fails_authentication():
    data = plaintext(2100)  # three chunks, the last short
    blob = seal(data)
    for i in range(len(blob)):
        for bit in (0x01, 0x80):
            tampered = bytearray(blob)
            tampered[i] ^= bit
            with pytest.raises(crypto.DecryptionError):
                unseal(bytes(tampered))


def test_truncation_at_a_chunk_boundary_is_detected():
    blob = seal(plaintext(4096))  # 4 full chunks, the 4th sealed as final
    per_chunk = 1024 + crypto.TAG
    assert len(blob) == crypto.HEADER_LEN + 4 * per_chunk
    for chunks_kept in range(1, 4):  # each cut ends on a whole chunk that was not sealed as final
        cut = blob[: crypto.HEADER_LEN + chunks_kept * per_chunk]
        with pytest.raises(crypto.DecryptionError):
            unseal(cut)
    with pytest.raises(crypto.DecryptionError):
        unseal(blob[:-5])


def test_reordered_or_flipped_chunks_are_detected():
    blob = seal(plaintext(3000))
    per_chunk = 1024 + crypto.TAG
    h = crypto.HEADER_LEN
    swapped = blob[:h] + blob[h + per_chunk: h + 2 * per_chunk] + blob[h: h + per_chunk] + blob[h + 2 * per_chunk:]
    with pytest.raises(crypto.DecryptionError, match="chunk 0"):
        unseal(swapped)
    header_tampered = bytearray(blob)
    header_tampered[30] ^= 1  # the nonce prefix
    with pytest.raises(crypto.DecryptionError):
        unseal(bytes(header_tampered))


class ReadRecorder(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked: list[int] = []

    def read(self, n=-1):
        self.asked.append(n)
        return super().read(n)


@pytest.mark.parametrize("chunk_size", [0, crypto.MAX_CHUNK + 1, 2**32 - 1])
def test_a_tampered_chunk_size_is_refused_before_any_allocation(chunk_size):
    blob = bytearray(seal(plaintext(100)))
    blob[12:16] = chunk_size.to_bytes(4, "big")  # the chunk size field (unauthenticated until chunk 0)
    src = ReadRecorder(bytes(blob))
    with pytest.raises(crypto.DecryptionError, match="chunk size"):
        crypto.decrypt_stream(src, io.BytesIO(), KEY)
    assert src.asked == [crypto.HEADER_LEN]  # nothing read (or allocated) past the header


def test_the_largest_allowed_chunk_size_still_reads():
    data = plaintext(3000)
    assert unseal(seal(data, chunk=crypto.MAX_CHUNK)) == data
    with pytest.raises(ValueError):
        seal(data, chunk=crypto.MAX_CHUNK + 1)


def test_wrong_key_is_named_as_such():
    blob = seal(b"secret rows")
    with pytest.raises(crypto.WrongKey, match="different key"):
        unseal(blob, key=bytes(32))


@pytest.fixture
def catalog(fresh_db):
    migrate.apply(fresh_db)
    return BackupCatalog(fresh_db)


def test_encrypted_backup_round_trip_and_lost_key(demo_db, catalog, tmp_path, monkeypatch):
    key_text = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("DBOPS_BACKUP_KEY", key_text)
    settings = BackupSettings(dir=tmp_path / "b", min_free_mb=0, encrypt=True)
    result = take_backup(Target("prod", demo_db), settings, catalog, "U1")
    assert result.verify_status == "verified"
    archive = Path(result.location)
    assert archive.name.endswith(".dump.enc")
    assert archive.read_bytes().startswith(crypto.MAGIC)
    written = [archive.name, archive.name + ".manifest.json", archive.name + ".verified.json", "dbops-index.json"]
    assert sorted(p.name for p in archive.parent.iterdir()) == sorted(written)
    for name in written[1:]:
        assert key_text not in archive.with_name(name).read_text()
    assert key_text not in str(result.to_report())

    plain, manifest = materialize(catalog, settings, result.backup_id, tmp_path / "drill")
    assert plain.read_bytes().startswith(b"PGDMP") and manifest.archive.encrypted

    monkeypatch.setenv("DBOPS_BACKUP_KEY", base64.b64encode(os.urandom(32)).decode())  # the key was replaced
    report = verify_backup(catalog, settings, result.backup_id)
    assert report.outcome is Outcome.FAILED and "UNRESTORABLE" in report.summary
    assert catalog.get(result.backup_id).verify_status == "unrestorable"

    monkeypatch.setenv("DBOPS_BACKUP_KEY", key_text)  # the right key again: verified again
    assert verify_backup(catalog, settings, result.backup_id).outcome is Outcome.OK

    monkeypatch.delenv("DBOPS_BACKUP_KEY")  # and now gone here: that says nothing about the archive
    report = verify_backup(catalog, settings, result.backup_id)
    assert "not checked here (no key)" in report.summary and "DBOPS_BACKUP_KEY is not set" in report.summary
    assert "UNRESTORABLE" not in report.summary and report.outcome is Outcome.FAILED
    # A check that could not be made here records nothing: the catalog keeps what the last one found.
    assert catalog.get(result.backup_id).verify_status == "verified"
    with pytest.raises(Unrestorable):
        materialize(catalog, settings, result.backup_id, tmp_path / "drill2")
