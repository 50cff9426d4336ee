"""Streaming, chunked, authenticated encryption of archives at rest (AES-256-GCM per 1 MiB chunk).

File layout: a 32-byte header, then chunks of (ciphertext || 16-byte tag), each chunk CHUNK bytes of
plaintext except the last, which may be shorter (even empty).

    header = MAGIC (8) | version (1) | reserved (3) | chunk size (4, big-endian)
             | key id (8) | nonce prefix (8)

- nonce per chunk = nonce prefix (random per file) || chunk counter (4 bytes): never reused.
- AAD per chunk = header || counter (8 bytes) || final flag (1 byte). The counter catches reordered
  or dropped chunks; the final flag catches a file cut off at a chunk boundary (the last chunk left
  was not sealed as final); the header in the AAD catches a tampered header.
- the header is authenticated only with the first chunk, so its chunk size is checked against
  MAX_CHUNK before anything is allocated: a tampered header cannot make the reader allocate gigabytes.
- key id = first 8 bytes of HMAC-SHA256(key, "dbops backup key id"): tells "wrong key" apart from
  "damaged file" without revealing anything about the key.

The manifests and verification records in storage are sealed with HMAC-SHA256 under `seal_key`, a
key derived from DBOPS_BACKUP_KEY with HKDF-SHA256 (its own purpose, so the seal never uses the
encryption key itself): whoever can write to the storage cannot write a seal this dbops accepts.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct
from typing import BinaryIO, Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import DbopsError

MAGIC = b"DBOPSENC"
VERSION = 1
CHUNK = 1024 * 1024
MAX_CHUNK = 16 * 1024 * 1024  # the largest chunk a reader accepts (dbops writes CHUNK)
TAG = 16
HEADER_LEN = 32
_HEADER = struct.Struct(">8sB3sI8s8s")


class DecryptionError(DbopsError):
    """The archive cannot be decrypted: wrong key, damaged, truncated or reordered."""


class WrongKey(DecryptionError):
    pass


def key_id(key: bytes) -> bytes:
    return hmac.new(key, b"dbops backup key id", hashlib.sha256).digest()[:8]


def parameters(key: bytes | None) -> dict | None:
    """What decrypting needs besides DBOPS_BACKUP_KEY; the key id tells a wrong key from a damaged file."""
    if key is None:
        return None
    return {"algorithm": "AES-256-GCM", "chunk_bytes": CHUNK, "format_version": VERSION, "key_id": key_id(key).hex()}


def seal_key(backup_key: bytes) -> bytes:
    """The key that seals manifests and verification records, derived from DBOPS_BACKUP_KEY."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"dbops manifest seal v1").derive(backup_key)


def mac(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def mac_matches(key: bytes, data: bytes, claimed: object) -> bool:
    return isinstance(claimed, str) and hmac.compare_digest(mac(key, data), claimed)


def is_encrypted_file(path) -> bool:
    """Whether a stored archive is a dbops encrypted archive, read from its own first bytes (never
    from its manifest, which says what its writer wanted it to say)."""
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def encrypt_stream(src: BinaryIO, dst: BinaryIO, key: bytes, on_write: Callable[[bytes], None] | None = None,
                   chunk: int = CHUNK) -> int:
    """Encrypt all of `src` into `dst`; returns the bytes written. `on_write` sees every byte written."""
    encryptor = Encryptor(key, chunk)
    written = _emit(dst, encryptor.header, on_write)
    while block := src.read(chunk):
        written += _emit(dst, encryptor.update(block), on_write)
    return written + _emit(dst, encryptor.finish(), on_write)


class Encryptor:
    """The same file as encrypt_stream writes, made from pieces as they come (a pipe): `header`, then
    what each `update` returns, then what `finish` returns. A chunk is sealed once the next byte is
    known to exist, so the last one, sealed by `finish`, carries the final flag."""

    def __init__(self, key: bytes, chunk: int = CHUNK) -> None:
        if not 1 <= chunk <= MAX_CHUNK:
            raise ValueError(f"chunk size must be from 1 to {MAX_CHUNK} bytes")
        self._aes = AESGCM(key)
        self._chunk = chunk
        self.header = _HEADER.pack(MAGIC, VERSION, b"\0\0\0", chunk, key_id(key), os.urandom(8))
        self._pending = bytearray()
        self._counter = 0

    def update(self, data: bytes) -> bytes:
        self._pending += data
        sealed = []
        while len(self._pending) > self._chunk:  # more follows this chunk: it is not the last
            sealed.append(self._seal(bytes(self._pending[:self._chunk]), final=False))
            del self._pending[:self._chunk]
        return b"".join(sealed)

    def finish(self) -> bytes:
        return self._seal(bytes(self._pending), final=True)

    def _seal(self, block: bytes, final: bool) -> bytes:
        sealed = self._aes.encrypt(_nonce(self.header, self._counter), block, _aad(self.header, self._counter, final))
        self._counter += 1
        return sealed


def decrypt_stream(src: BinaryIO, dst: BinaryIO, key: bytes) -> int:
    """Decrypt all of `src` into `dst`, checking every chunk; returns plaintext bytes written."""
    header = src.read(HEADER_LEN)
    magic, version, _, chunk, kid, _prefix = read_header(header)
    if not hmac.compare_digest(kid, key_id(key)):
        raise WrongKey("the archive was encrypted with a different key than DBOPS_BACKUP_KEY holds "
                       f"(archive key id {kid.hex()}, current key id {key_id(key).hex()})")
    aes = AESGCM(key)
    counter, total = 0, 0
    sealed = _read_full(src, chunk + TAG)
    while True:
        following = _read_full(src, chunk + TAG) if len(sealed) == chunk + TAG else b""
        final = not following
        if len(sealed) < TAG:
            raise DecryptionError(f"the encrypted archive is truncated (chunk {counter} is incomplete)")
        try:
            plain = aes.decrypt(_nonce(header, counter), sealed, _aad(header, counter, final))
        except InvalidTag:
            raise DecryptionError(f"the encrypted archive is damaged, truncated or reordered at chunk {counter} "
                                  "(authentication failed)") from None
        dst.write(plain)
        total += len(plain)
        if final:
            return total
        sealed, counter = following, counter + 1


def read_header(header: bytes) -> tuple:
    if len(header) < HEADER_LEN or not header.startswith(MAGIC):
        raise DecryptionError("not a dbops encrypted archive (no DBOPSENC header)")
    fields = _HEADER.unpack(header[:HEADER_LEN])
    if fields[1] != VERSION:
        raise DecryptionError(f"encrypted archive format {fields[1]} is not known to this dbops")
    if not 1 <= fields[3] <= MAX_CHUNK:
        raise DecryptionError(f"the encrypted archive's header is damaged (chunk size {fields[3]} bytes, "
                              f"at most {MAX_CHUNK} allowed)")
    return fields


def archive_key_id(path) -> str:
    with open(path, "rb") as f:
        return read_header(f.read(HEADER_LEN))[4].hex()


def _nonce(header: bytes, counter: int) -> bytes:
    return header[24:32] + struct.pack(">I", counter)


def _aad(header: bytes, counter: int, final: bool) -> bytes:
    return header + struct.pack(">QB", counter, 1 if final else 0)


def _read_full(src: BinaryIO, n: int) -> bytes:
    parts, want = [], n
    while want:
        piece = src.read(want)
        if not piece:
            break
        parts.append(piece)
        want -= len(piece)
    return b"".join(parts)


def _emit(dst: BinaryIO, data: bytes, on_write: Callable[[bytes], None] | None) -> int:
    if not data:
        return 0
    dst.write(data)
    if on_write:
        on_write(data)
    return len(data)
