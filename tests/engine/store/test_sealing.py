"""Bodies at rest, sealed through the journal on SQLite and PostgreSQL."""

from __future__ import annotations

from engine.store import Journal
from tests.engine.store.support import inbound


class TestEncryptionAtRest:
    def test_bodies_are_sealed_with_the_key_and_unreadable_without_it(self, store_url: str,
                                                                     monkeypatch: object) -> None:
        """With WASLA_JOURNAL_KEY the raw and FHIR bodies are AES-GCM sealed: the same journal read without
        the key, or with another, refuses with a reason; bodies from before the key stay readable."""
        import base64
        import os

        import pytest

        from engine.errors import StoreError

        mp = monkeypatch  # pytest.MonkeyPatch
        plain = Journal(store_url)
        before = inbound(raw=b"MSH|^~\\&|before the key")
        plain.messages.receive(before)
        plain.close()
        mp.setenv("WASLA_JOURNAL_KEY", base64.b64encode(os.urandom(32)).decode())  # type: ignore[attr-defined]
        sealed = Journal(store_url)
        msg = inbound(raw=b"MSH|^~\\&|HIS|CHU|PID|1||IPP999^^^CHU^PI||SECRETFAMILY")
        sealed.messages.receive(msg)
        sealed.outputs.transformed(msg.id, {"fhir": b'{"resourceType":"Bundle","family":"SECRETFAMILY"}'})
        assert sealed.messages.get(msg.id).raw == msg.raw  # type: ignore[union-attr]
        assert b"SECRETFAMILY" in sealed.outputs.get(msg.id, "fhir").body  # type: ignore[union-attr]
        assert sealed.messages.get(before.id).raw == before.raw  # type: ignore[union-attr]
        stored_at = ("SELECT raw FROM messages WHERE id = ?" if sealed.db.dialect.name == "sqlite" else
                     "SELECT body FROM bodies WHERE message_id = ? AND part = ''")
        stored = sealed.db.query(stored_at, (msg.id,))[0][0]
        assert bytes(stored).startswith(b"WSL1")
        sealed.close()

        mp.setenv("WASLA_JOURNAL_KEY", base64.b64encode(os.urandom(32)).decode())  # type: ignore[attr-defined]
        other = Journal(store_url)
        with pytest.raises(StoreError, match="another key"):
            other.messages.get(msg.id)
        other.close()
        mp.delenv("WASLA_JOURNAL_KEY")  # type: ignore[attr-defined]
        none = Journal(store_url)
        with pytest.raises(StoreError, match="set WASLA_JOURNAL_KEY"):
            none.messages.get(msg.id)
        assert none.messages.search(control_id="CTRL")  # metadata stays searchable without the key
        none.close()
