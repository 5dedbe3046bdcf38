"""Secrets shared by every process of a journal, and the keyed hash of patient identifiers."""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from engine.secret import secret
from engine.store.database import Database

__all__ = ["Keys"]


class Keys:
    """The `meta` table's secrets: owns the patient-key HMAC key. Guarantees that every process of
    one journal hashes an identifier to the same patient key, and that the key is never a bare hash
    (an 8-digit hospital IPP hashed without a key is reversed by trying every number)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # From WASLA_PATIENT_KEY_SECRET, else made once and kept in `meta`.
        self._hash_key = self.meta_secret("patient_key_secret", "WASLA_PATIENT_KEY_SECRET")

    def meta_secret(self, key: str, env: str) -> bytes:
        """A secret from the environment variable `env`, else made once and shared through `meta` by
        every process of this journal."""
        value = secret(env)
        if value:
            return value.encode()
        candidate = secrets.token_hex(32)
        ins = self.db.sql(self.db.dialect.meta_insert())

        def work(cur: Any) -> None:
            cur.execute(ins, (key, candidate))

        self.db.commit(work)
        return str(self.db.query("SELECT value FROM meta WHERE key = ?", (key,))[0][0]).encode()

    def patient_key(self, system: str, value: str) -> str:
        """The keyed hash of a patient identifier ('' for none): what the journal stores and searches."""
        if not value:
            return ""
        return hmac.digest(self._hash_key, f"{system}|{value}".encode(), "sha256").hex()[:32]
