"""The patient-key HMAC."""

from __future__ import annotations

from engine.store import Journal


class TestKeys:
    """Patient keys: keyed, stable per journal."""

    def test_patient_key_is_keyed_hash(self, store_url: str) -> None:
        """The patient key is stable per journal, not the bare sha256 of the identifier."""
        import hashlib

        j = Journal(store_url)
        try:
            k = j.keys.patient_key("sys", "123")
            assert k == j.keys.patient_key("sys", "123") and k != j.keys.patient_key("sys", "124")
            assert k not in hashlib.sha256(b"sys|123").hexdigest()
        finally:
            j.close()
