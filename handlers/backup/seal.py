"""The manifest file in storage: a backup's manifest and its seal, and what the seal proves.

With DBOPS_BACKUP_KEY set the seal is an HMAC-SHA256 under a key derived from it (crypto.seal_key), else
with DBOPS_SEAL_KEY under one derived from that (handlers/sealing.py):
whoever can write to the storage (and copy an archive of another database there) cannot seal a
manifest this dbops accepts. Without a key the seal is a SHA-256 of the document: it catches a
damaged file, not a forged one, and every message that relies on it says so.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from enum import StrEnum

from ..errors import DbopsError
from . import crypto
from .manifest import BackupManifest

SEAL_VERSION = 1  # the sealed file around a manifest without a key: a SHA-256
KEYED_SEAL_VERSION = 2  # with a key: HMAC-SHA256 under BackupSettings.seal_key


class ManifestDamaged(DbopsError):
    """A manifest file in storage that is not exactly what dbops wrote."""


class Seal(StrEnum):
    """What a manifest file's seal proves, as read here."""

    KEYED = "keyed"  # HMAC with the seal key this process holds: written by a dbops that holds the key
    OTHER_KEY = "other-key"  # HMAC with another key (DBOPS_BACKUP_KEY was replaced, or someone else sealed it)
    UNCHECKED = "unchecked"  # HMAC, and no key here to check it
    UNKEYED = "unkeyed"  # a SHA-256 (no key was set when it was written): intact, but anyone could write one
    PLAIN = "plain"  # an older dbops's manifest, without any digest


def _canonical(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def seal(manifest: BackupManifest, key: bytes | None = None) -> bytes:
    """The manifest file as stored: the document and its seal, an HMAC-SHA256 of its canonical
    JSON under `key` (BackupSettings.seal_key), or without a key its SHA-256.

    The file is a deterministic rendering, so `unseal` can demand the exact bytes back: a flipped
    byte anywhere (a value, the seal, even whitespace) is caught.
    """
    doc = manifest.to_dict()
    if key is None:
        return _render({"dbops_manifest": SEAL_VERSION, "sha256": hashlib.sha256(_canonical(doc)).hexdigest(),
                        "manifest": doc})
    return _render({"dbops_manifest": KEYED_SEAL_VERSION, "key_id": _seal_key_id(key),
                    "hmac_sha256": crypto.mac(key, _canonical(doc)), "manifest": doc})


def _seal_key_id(key: bytes) -> str:
    return crypto.mac(key, b"dbops seal key id")[:16]


def _render(sealed: dict) -> bytes:
    return (json.dumps(sealed, sort_keys=True, indent=1, ensure_ascii=True) + "\n").encode()


def unseal(data: bytes, name: str = "the manifest", key: bytes | None = None) -> tuple[BackupManifest, Seal]:
    """(manifest, what its seal proves) from a manifest file, its HMAC checked with `key` when it has
    one. Raises ManifestDamaged for anything not exactly as written."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ManifestDamaged(f"{name} is not valid JSON any more: it was changed or damaged") from None
    if not isinstance(doc, dict):
        raise ManifestDamaged(f"{name} is not a dbops manifest")
    if "dbops_manifest" not in doc:
        return _manifest(doc, name), Seal.PLAIN
    inner = doc.get("manifest")
    version = doc.get("dbops_manifest")
    if not isinstance(inner, dict) or version not in (SEAL_VERSION, KEYED_SEAL_VERSION):
        raise ManifestDamaged(f"{name} has an unknown or damaged seal")
    if version == SEAL_VERSION:
        if not isinstance(doc.get("sha256"), str):
            raise ManifestDamaged(f"{name} has an unknown or damaged seal")
        digest = hashlib.sha256(_canonical(inner)).hexdigest()
        if digest != doc["sha256"]:
            raise ManifestDamaged(f"{name} was changed after the backup: its content's SHA-256 is {digest[:16]}…, "
                                  f"the seal says {doc['sha256'][:16]}…")
        state = Seal.UNKEYED
    else:
        if not isinstance(doc.get("hmac_sha256"), str) or not isinstance(doc.get("key_id"), str):
            raise ManifestDamaged(f"{name} has an unknown or damaged seal")
        if key is None:
            state = Seal.UNCHECKED
        elif doc["key_id"] != _seal_key_id(key):
            state = Seal.OTHER_KEY
        elif not crypto.mac_matches(key, _canonical(inner), doc["hmac_sha256"]):
            raise ManifestDamaged(f"{name} was changed after the backup: its seal does not match its content")
        else:
            state = Seal.KEYED
    if _render(doc) != data:
        raise ManifestDamaged(f"{name} differs from what dbops wrote (its bytes were changed)")
    return _manifest(inner, name), state


def _manifest(doc: dict, name: str) -> BackupManifest:
    try:
        return BackupManifest.from_dict(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestDamaged(f"{name} is not a dbops manifest ({type(exc).__name__}: {exc})") from None


def untrusted_because(state: Seal, key_here: bool) -> str | None:
    """Why a manifest found in storage cannot be taken on its own word (None: it can). With a key
    here only a seal made with it proves that this dbops wrote the backup; without any key, a
    SHA-256 seal is all there is."""
    if state is Seal.KEYED:
        return None
    if state is Seal.UNCHECKED:
        return ("it is sealed with a key (DBOPS_BACKUP_KEY or DBOPS_SEAL_KEY), neither set here: its seal cannot "
                "be checked")
    if not key_here:
        return None
    if state is Seal.OTHER_KEY:
        return ("it is sealed with another key than the one held here (the key was replaced since, or "
                "someone else sealed it)")
    return ("it is sealed without a key (by an older dbops, or before a seal key was set), so nothing "
            "proves dbops wrote it; `backup verify ID` re-seals it with the key once the catalog knows it")


FUTURE_SKEW = timedelta(minutes=5)  # clocks of two machines may differ this much


def future_dated(created_at: str, now: datetime | None = None) -> str | None:
    """Why a manifest's time cannot be true (None: it can): a backup from the future is a clock
    error or a planted one, and either way it must not become the newest."""
    try:
        when = datetime.fromisoformat(created_at)
    except (TypeError, ValueError):
        return f"its creation time {created_at!r} is not a time"
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if when > (now or datetime.now(timezone.utc)) + FUTURE_SKEW:
        return f"it is dated {when:%Y-%m-%d %H:%M} UTC, in the future (a wrong clock, or a planted backup)"
    return None
