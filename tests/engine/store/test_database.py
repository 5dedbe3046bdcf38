"""The journal's database on SQLite and PostgreSQL: migrations, group commit, loop commits, reconnects."""

from __future__ import annotations

import threading
from pathlib import Path

from engine.store import Journal, journal
from engine.types import Status
from tests.engine.store.support import inbound


class TestDatabase:
    """Migrations at open, group commit, one bad write failing alone."""

    def test_migrations_are_idempotent(self, store_url: str) -> None:
        """Opening the journal twice migrates once and keeps the data."""
        j = Journal(store_url)
        msg = inbound()
        j.messages.receive(msg)
        j.close()
        j2 = Journal(store_url)
        try:
            assert j2.schema_version == max(int(f.name[:4]) for f in  # the newest migration
                                            Path(journal.__file__).with_name("migrations").glob("*/*.sql"))
            row = j2.messages.get(msg.id)
            assert row is not None and row.raw == msg.raw and row.status == Status.RECEIVED
        finally:
            j2.close()

    def test_group_commit_under_concurrency(self, store_url: str) -> None:
        """200 receives from 20 threads all commit, each caller returning after its own commit."""
        j = Journal(store_url, group_commit_ms=2)
        try:
            ids: list[str] = []
            lock = threading.Lock()

            def work() -> None:
                for _ in range(10):
                    m = inbound()
                    j.messages.receive(m)
                    assert j.messages.get(m.id) is not None  # visible once receive returned
                    with lock:
                        ids.append(m.id)

            threads = [threading.Thread(target=work) for _ in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(ids) == 200 and j.messages.counts() == {"received": 200}
        finally:
            j.close()

    def test_one_bad_write_fails_alone(self, store_url: str) -> None:
        """A write that violates a constraint fails its caller only; the batch around it commits."""
        import pytest

        from engine.errors import StoreError

        j = Journal(store_url)
        try:
            msg = inbound()
            j.messages.receive(msg)
            with pytest.raises(StoreError):
                j.messages.receive(msg)  # same id again
            other = inbound()
            j.messages.receive(other)
            assert j.messages.get(other.id) is not None
        finally:
            j.close()


class TestLoopCommit:
    def test_one_loop_iteration_is_one_transaction(self, store_url: str) -> None:
        """Messages admitted in the same loop iteration commit together, on the loop's thread;
        a bad write among them fails alone, and a lazy event rides along with the next commit."""
        import asyncio

        import pytest

        from engine.errors import StoreError

        j = Journal(store_url)
        try:
            first = inbound()
            j.messages.receive(first)
            commits: list[int] = []
            real = j.db._writer._transact

            def counting(works: list) -> list:  # type: ignore[type-arg]
                commits.append(len(works))
                return real(works)

            j.db._writer._transact = counting  # type: ignore[method-assign]

            async def main() -> list[object]:
                msgs = [inbound() for _ in range(5)]
                j.messages.note(first.id, "ack", "AA", {"latency_ms": 1.0})  # lazy: no commit of its own
                futs = [j.db.commit_async(j.messages.receive_work(m)) for m in msgs]
                futs.append(j.db.commit_async(j.messages.receive_work(first)))  # same id again: refused alone
                out = await asyncio.gather(*futs, return_exceptions=True)
                assert all(j.messages.get(m.id) is not None for m in msgs)
                return out

            out = asyncio.run(main())
            assert out[:5] == [None] * 5 and isinstance(out[5], StoreError)
            assert commits[0] == 7  # 5 messages + the duplicate id + the ACK event, one transaction
            assert [e["status"] for e in j.messages.events(first.id)] == ["received", "AA"]
            with pytest.raises(RuntimeError):
                j.db.commit_async(j.messages.receive_work(inbound()))  # outside a loop: use commit()
        finally:
            j.close()


class TestReconnect:
    def test_reads_and_writes_go_on_after_postgresql_cuts_the_connections(self, postgres_url: str) -> None:
        """Found by the PostgreSQL-restart fault test: a reader whose connection the server ended kept
        failing (readiness said `journal: AdminShutdown` for ever). Now it reconnects on the next read.
        The writer already replaced its connection after the failed write."""
        import psycopg

        j = Journal(postgres_url)
        try:
            first = inbound()
            j.messages.receive(first)
            assert j.messages.get(first.id) is not None
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              " WHERE datname = current_database() AND pid <> pg_backend_pid()")
            assert j.messages.get(first.id) is not None  # the read connection was cut: a new one answers
            j.db.ping()
            import pytest

            from engine.errors import StoreError

            with pytest.raises(StoreError, match="AdminShutdown"):  # the write in hand fails (intake: AE, resent)
                j.messages.receive(inbound())
            second = inbound()
            j.messages.receive(second)  # and the writer has a new connection for the next
            assert j.messages.get(second.id) is not None
        finally:
            j.close()
