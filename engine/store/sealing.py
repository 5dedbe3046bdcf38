"""Bodies at rest: zlib, then AES-256-GCM when WASLA_JOURNAL_KEY is set (cryptography's AESGCM).

The key is 32 bytes, base64 in the environment (never in a file of the project, never logged).
A sealed body is `WSL1` + 12-byte nonce + ciphertext and tag; the message id is the associated
data, so a body copied onto another row does not decrypt. Bodies written before the key was set
stay readable (plain zlib); a sealed body read without the key, or with another key, is a
StoreError naming the cause, never garbage.
"""

from __future__ import annotations

import base64
import binascii
import os
import zlib

from engine.errors import StoreError
from engine.secret import secret

__all__ = ["Sealer"]

_MAGIC = b"WSL1"


class Sealer:
    """Seals and unseals message bodies at rest: zlib, then AES-256-GCM with the message id as associated
    data when `WASLA_JOURNAL_KEY` is set. Reads plain zlib bodies too; a sealed body it cannot open is
    a `StoreError`, never garbage.
    """

    def __init__(self, key_b64: str | None = None) -> None:
        key_b64 = key_b64 if key_b64 is not None else secret("WASLA_JOURNAL_KEY")
        self._aead = None
        if key_b64:
            try:
                key = base64.b64decode(key_b64, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise StoreError("WASLA_JOURNAL_KEY is not base64") from exc
            if len(key) != 32:
                raise StoreError("WASLA_JOURNAL_KEY must be 32 bytes (base64 of `openssl rand 32`)")
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(key)

    @property
    def enabled(self) -> bool:
        return self._aead is not None

    def seal(self, data: bytes, message_id: str) -> bytes:
        packed = zlib.compress(data, 1)
        if self._aead is None:
            return packed
        nonce = os.urandom(12)
        return _MAGIC + nonce + self._aead.encrypt(nonce, packed, message_id.encode())

    def open(self, blob: bytes, message_id: str, limit: int | None = None) -> bytes:
        """The body of `message_id`; with `limit`, only its first `limit` bytes (the rest is not
        inflated: a page showing the head of a 20 MB body costs what the head costs)."""
        if not blob:
            return b""  # erased by retention
        if blob[:4] == _MAGIC:
            if self._aead is None:
                raise StoreError("this body is encrypted: set WASLA_JOURNAL_KEY to read it")
            from cryptography.exceptions import InvalidTag

            try:
                blob = self._aead.decrypt(blob[4:16], blob[16:], message_id.encode())
            except InvalidTag as exc:
                raise StoreError("this body does not decrypt with WASLA_JOURNAL_KEY (another key?)") from exc
        if limit is None:
            return zlib.decompress(blob)
        return zlib.decompressobj().decompress(blob, limit)
