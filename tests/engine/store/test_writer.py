"""The group-commit writer: it survives a lost database."""

from __future__ import annotations

from engine.store import Journal


class TestWriterSurvives:
    def test_a_failed_reconnect_fails_the_writes_and_the_writer_goes_on(self, postgres_url: str) -> None:
        """Found by the PostgreSQL-restart fault test: the connection died and the reconnect failed
        too ('the database system is shutting down'); that exception killed the writer thread and
        every later write waited for ever. Now those writes fail (StoreError) and the next one
        reconnects. The failing connect is a stand-in: PostgreSQL refusing during its shutdown."""
        import psycopg
        import pytest

        from engine.errors import StoreError
        from engine.store.dialect import dialect_for
        from engine.store.writer import GroupCommitWriter

        dialect = dialect_for(postgres_url)
        Journal(postgres_url).close()  # the schema
        refuse = [False]

        def connect() -> object:
            if refuse[0]:
                raise StoreError("cannot connect to PostgreSQL at 127.0.0.1:5432")
            return dialect.connect()

        writer = GroupCommitWriter(connect)
        try:
            writer.run(lambda cur: cur.execute("INSERT INTO meta (key, value) VALUES ('a', '1')"))
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              " WHERE datname = current_database() AND pid <> pg_backend_pid()")
            refuse[0] = True
            with pytest.raises(StoreError, match="journal write failed"):
                writer.run(lambda cur: cur.execute("INSERT INTO meta (key, value) VALUES ('b', '2')"))
            with pytest.raises(StoreError, match="journal unavailable"):
                writer.run(lambda cur: cur.execute("INSERT INTO meta (key, value) VALUES ('c', '3')"))
            refuse[0] = False
            writer.run(lambda cur: cur.execute("INSERT INTO meta (key, value) VALUES ('d', '4')"))
        finally:
            writer.close()
        with psycopg.connect(postgres_url) as check:
            assert [r[0] for r in check.execute("SELECT key FROM meta WHERE key IN ('a','b','c','d') ORDER BY key")] \
                == ["a", "d"]
