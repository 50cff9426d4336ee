"""Encryption at rest: the chunked AES-GCM format, and encrypted backups end to end."""
from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import pytest

from bot.state import migrate
from handlers.backup import BackupCatalog, BackupSettings, materialize, take_backup, verify_backup
from handlers.backup import crypto
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


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 4096, 5000])
def test_round_trip_sizes(size):
    data = os.urandom(size)
    blob = seal(data)
    assert data not in blob or size == 0
    assert unseal(blob) == data


def test_truncation_at_a_chunk_boundary_is_detected():
    blob = seal(os.urandom(4096))  # 4 full chunks, the 4th sealed as final
    per_chunk = 1024 + crypto.TAG
    assert len(blob) == crypto.HEADER_LEN + 4 * per_chunk
    for chunks_kept in range(1, 4):  # each cut ends on a whole chunk that was not sealed as final
        cut = blob[: crypto.HEADER_LEN + chunks_kept * per_chunk]
        with pytest.raises(crypto.DecryptionError):
            unseal(cut)
    with pytest.raises(crypto.DecryptionError):
        unseal(blob[:-5])


def test_reordered_or_flipped_chunks_are_detected():
    blob = seal(os.urandom(3000))
    per_chunk = 1024 + crypto.TAG
    h = crypto.HEADER_LEN
    swapped = blob[:h] + blob[h + per_chunk: h + 2 * per_chunk] + blob[h: h + per_chunk] + blob[h + 2 * per_chunk:]
    with pytest.raises(crypto.DecryptionError, match="chunk 0"):
        unseal(swapped)
    flipped = bytearray(blob)
    flipped[h + 10] ^= 1
    with pytest.raises(crypto.DecryptionError):
        unseal(bytes(flipped))
    header_tampered = bytearray(blob)
    header_tampered[30] ^= 1  # the nonce prefix
    with pytest.raises(crypto.DecryptionError):
        unseal(bytes(header_tampered))


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
    assert sorted(p.name for p in archive.parent.iterdir()) == sorted([archive.name, archive.name + ".manifest.json"])
    assert key_text not in archive.with_name(archive.name + ".manifest.json").read_text()
    assert key_text not in str(result.to_report())

    plain, manifest = materialize(catalog, settings, result.backup_id, tmp_path / "drill")
    assert plain.read_bytes().startswith(b"PGDMP") and manifest.archive.encrypted

    monkeypatch.setenv("DBOPS_BACKUP_KEY", base64.b64encode(os.urandom(32)).decode())  # the key was replaced
    report = verify_backup(catalog, settings, result.backup_id)
    assert report.outcome is Outcome.FAILED and "UNRESTORABLE" in report.summary
    assert catalog.get(result.backup_id).verify_status == "unrestorable"

    monkeypatch.delenv("DBOPS_BACKUP_KEY")  # and now gone
    report = verify_backup(catalog, settings, result.backup_id)
    assert "UNRESTORABLE" in report.summary and "DBOPS_BACKUP_KEY is not set" in report.summary
    with pytest.raises(Unrestorable):
        materialize(catalog, settings, result.backup_id, tmp_path / "drill2")
