"""DBOPS_SEAL_KEY: the secret the bot seals what it vouches for with, kept in no storage and no database.

Each use gets its own key, derived with HKDF under its own purpose: approval requests and their votes
(bot/core/approvals/seal.py), and backups' manifests and verification records when DBOPS_BACKUP_KEY
(which seals them when it is set) is not. Whoever can write the state database or the backup storage
cannot then write a seal the bot accepts."""
from __future__ import annotations

import os
from typing import Mapping

from .errors import ConfigError

SEAL_KEY_VARIABLE = "DBOPS_SEAL_KEY"
MIN_LENGTH = 32
APPROVALS = b"dbops approval seal v1"
MANIFESTS = b"dbops manifest seal v1"


def derived_key(purpose: bytes, env: Mapping[str, str] | None = None) -> bytes | None:
    """The key for `purpose` derived from DBOPS_SEAL_KEY; None when it is not set; too short: ConfigError."""
    raw = (os.environ if env is None else env).get(SEAL_KEY_VARIABLE) or ""
    if not raw:
        return None
    if len(raw) < MIN_LENGTH:
        raise ConfigError(f"{SEAL_KEY_VARIABLE} is too short: give it {MIN_LENGTH} characters or more "
                          "(`openssl rand -base64 32`)")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(raw.encode())
