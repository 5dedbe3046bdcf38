"""The journal on SQLite and PostgreSQL: migrations, lifecycle, recovery queries, group commit."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.ids import message_id
from engine.store import Journal, Pruned, journal
from engine.types import Inbound, Status


def _inbound(channel: str = "c", raw: bytes = b"MSH|^~\\&|x") -> Inbound:
    return Inbound(message_id(), channel, datetime.now(UTC), raw, "ADT^A01", "CTRL", "FAC", "pk")


class TestJournal:
    def test_migrations_are_idempotent(self, store_url: str) -> None:
        """Opening the journal twice migrates once and keeps the data."""
        j = Journal(store_url)
        msg = _inbound()
        j.receive(msg)
        j.close()
        j2 = Journal(store_url)
        try:
            assert j2.schema_version == max(int(f.name[:4]) for f in  # the newest migration
                                            Path(journal.__file__).with_name("migrations").glob("*/*.sql"))
            row = j2.get(msg.id)
            assert row is not None and row.raw == msg.raw and row.status == Status.RECEIVED
        finally:
            j2.close()

    def test_lifecycle(self, store_url: str) -> None:
        """received → transformed (one pending output per destination) → delivered when all outputs are."""
        j = Journal(store_url)
        try:
            msg = _inbound()
            j.receive(msg)
            j.transformed(msg.id, {"a": b"{}", "b": b"{}"})
            assert [r.id for r in j.unfinished()] == [msg.id]
            assert j.delivered(msg.id, "a", "loc-a") is False
            assert j.get(msg.id).status == Status.TRANSFORMED
            assert j.delivered(msg.id, "b", "loc-b") is True
            assert j.get(msg.id).status == Status.DELIVERED
            assert list(j.unfinished()) == []
            assert [e["status"] for e in j.events(msg.id)] == ["received", "transformed", "delivered", "delivered"]
        finally:
            j.close()

    def test_failed_keeps_reason(self, store_url: str) -> None:
        """A failed message keeps its stage and reason and is searchable by status."""
        j = Journal(store_url)
        try:
            msg = _inbound()
            j.receive(msg)
            j.failed(msg.id, "transform", "rule PID-7 at PID-7: expected a valid calendar date")
            (row,) = j.search(status="failed")
            assert (row.id, row.stage, row.reason) == (msg.id, "transform",
                                                       "rule PID-7 at PID-7: expected a valid calendar date")
        finally:
            j.close()

    def test_a_nul_in_a_message_field_is_written_not_refused_for_ever(self, store_url: str) -> None:
        """PostgreSQL text and jsonb refuse NUL; a sender's MSH-10 can hold one. Refused, intake's
        commit failed at every resend and a transform batch was held for ever. It is written as
        U+FFFD in PostgreSQL's text and in JSON details (SQLite's text keeps it); the raw bytes keep it."""
        j = Journal(store_url)
        try:
            kept = "\x00" if store_url.startswith("sqlite") else "\ufffd"
            msg = Inbound(message_id(), "c", datetime.now(UTC), b"MSH|^~\\&|\x00", "ADT^A01", "C\x001", "F\x00", "pk")
            j.receive(msg)
            j.transformed_many([(msg.id, {"out": b"{}"}, {"warnings": [{"local_code": "A\x00B", "note": "q\\u0000"}]})])
            j.failed(msg.id, "deliver", "server said \x00")
            row = j.get(msg.id)
            assert row is not None and (row.control_id, row.sender, row.reason) == (
                f"C{kept}1", f"F{kept}", f"server said {kept}")
            assert row.raw == b"MSH|^~\\&|\x00"
            (warned,) = [e for e in j.events(msg.id) if e["status"] == Status.TRANSFORMED]
            assert warned["detail"]["warnings"] == [{"local_code": "A\ufffdB", "note": "q\\u0000"}]  # JSON: both stores
        finally:
            j.close()

    def test_group_commit_under_concurrency(self, store_url: str) -> None:
        """200 receives from 20 threads all commit, each caller returning after its own commit."""
        j = Journal(store_url, group_commit_ms=2)
        try:
            ids: list[str] = []
            lock = threading.Lock()

            def work() -> None:
                for _ in range(10):
                    m = _inbound()
                    j.receive(m)
                    assert j.get(m.id) is not None  # visible once receive returned
                    with lock:
                        ids.append(m.id)

            threads = [threading.Thread(target=work) for _ in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(ids) == 200 and j.counts() == {"received": 200}
        finally:
            j.close()

    def test_one_bad_write_fails_alone(self, store_url: str) -> None:
        """A write that violates a constraint fails its caller only; the batch around it commits."""
        import pytest

        from engine.errors import StoreError

        j = Journal(store_url)
        try:
            msg = _inbound()
            j.receive(msg)
            with pytest.raises(StoreError):
                j.receive(msg)  # same id again
            other = _inbound()
            j.receive(other)
            assert j.get(other.id) is not None
        finally:
            j.close()

    def test_patient_key_is_keyed_hash(self, store_url: str) -> None:
        """The patient key is stable per journal, not the bare sha256 of the identifier."""
        import hashlib

        j = Journal(store_url)
        try:
            k = j.patient_key("sys", "123")
            assert k == j.patient_key("sys", "123") and k != j.patient_key("sys", "124")
            assert k not in hashlib.sha256(b"sys|123").hexdigest()
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
            first = _inbound()
            j.receive(first)
            commits: list[int] = []
            real = j._writer._transact

            def counting(works: list) -> list:  # type: ignore[type-arg]
                commits.append(len(works))
                return real(works)

            j._writer._transact = counting  # type: ignore[method-assign]

            async def main() -> list[object]:
                msgs = [_inbound() for _ in range(5)]
                j.note(first.id, "ack", "AA", {"latency_ms": 1.0})  # lazy: no commit of its own
                futs = [j.commit_async(j.receive_work(m)) for m in msgs]
                futs.append(j.commit_async(j.receive_work(first)))  # same id again: refused alone
                out = await asyncio.gather(*futs, return_exceptions=True)
                assert all(j.get(m.id) is not None for m in msgs)
                return out

            out = asyncio.run(main())
            assert out[:5] == [None] * 5 and isinstance(out[5], StoreError)
            assert commits[0] == 7  # 5 messages + the duplicate id + the ACK event, one transaction
            assert [e["status"] for e in j.events(first.id)] == ["received", "AA"]
            with pytest.raises(RuntimeError):
                j.commit_async(j.receive_work(_inbound()))  # outside a loop: use commit()
        finally:
            j.close()


class TestParking:
    """Messages held on an unmapped local code; released once, by one worker, when every code is mapped."""

    def test_park_group_and_release(self, store_url: str) -> None:
        j = Journal(store_url)
        try:
            a, b, c = _inbound(raw=b"A"), _inbound(raw=b"B"), _inbound(raw=b"C")
            for m in (a, b, c):
                j.receive(m)
            j.park(a.id, "LAB", [("local-lab", "VITD")], "local codes without a national mapping: local-lab VITD")
            j.park(b.id, "LAB", [("local-lab", "VITD"), ("local-lab", "ZN")], "two codes")
            j.park(c.id, "LAB", [("local-lab", "ZN")], "one code")
            row = j.get(a.id)
            assert row is not None and row.status == Status.PARKED and "VITD" in row.reason
            groups = {(m, code): n for m, code, _, n, _, _ in j.parked_codes()}
            assert groups == {("local-lab", "VITD"): 2, ("local-lab", "ZN"): 2}
            released = j.release("local-lab", lambda code: code == "VITD")
            assert [r.id for r in released] == [a.id] and released[0].raw == b"A"
            assert j.get(a.id).status == Status.RECEIVED  # type: ignore[union-attr]
            assert j.get(b.id).status == Status.PARKED  # type: ignore[union-attr]  # ZN still unmapped
            assert j.release("local-lab", lambda code: code == "VITD") == []  # nothing twice
            assert sorted(r.id for r in j.release("local-lab", lambda code: True)) == sorted([b.id, c.id])
            assert j.parked_codes() == []
            assert [e["status"] for e in j.events(a.id)][-2:] == ["parked", "released"]
        finally:
            j.close()


class TestRetention:
    def test_bodies_then_messages_go_on_time_and_the_disk_is_reclaimed(self, store_url: str) -> None:
        """After bodies_days the raw and FHIR bodies are erased (metadata kept); after metadata_days the
        message goes with its events and outputs; on SQLite the file shrinks."""
        import os
        import random
        from datetime import timedelta

        now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
        j = Journal(store_url, clock=lambda: now)
        try:
            rng = random.Random(5)
            noise = bytes(rng.getrandbits(8) for _ in range(4000))  # incompressible: the file really grows
            ages = {"old": 400, "middle": 60, "new": 1}
            kept: dict[str, list[str]] = {}
            for label, days in ages.items():
                kept[label] = []
                for n in range(300):
                    msg = Inbound(message_id(), "adt", now - timedelta(days=days, minutes=n), noise + bytes([n % 256]),
                                  "ADT^A01", f"{label}{n}", "FAC", "pk")
                    j.receive(msg)
                    j.transformed(msg.id, {"fhir": noise})
                    kept[label].append(msg.id)
            other = Inbound(message_id(), "lab", now - timedelta(days=400), b"x", "ORU^R01", "L", "FAC", "")
            j.receive(other)
            path = store_url.removeprefix("sqlite:///") if store_url.startswith("sqlite") else None
            j.reclaim()
            before = os.path.getsize(path) if path else 0

            done = j.prune("adt", bodies_days=30, metadata_days=365)
            assert (done.messages, done.bodies) == (300, 300)
            assert j.get(kept["old"][0]) is None and j.events(kept["old"][0]) == []
            middle = j.get(kept["middle"][0])
            assert middle is not None and middle.raw == b"" and middle.status == "transformed"  # metadata kept
            assert j.output(kept["middle"][0], "fhir").body == b""  # type: ignore[union-attr]
            assert j.get(kept["new"][0]).raw == noise + bytes([0])  # type: ignore[union-attr]
            assert j.get(other.id) is not None  # another channel, another retention
            assert j.prune("adt", bodies_days=30, metadata_days=365) == Pruned()  # nothing left to do
            if not path:  # PostgreSQL: where autovacuum is off (as here), reclaim vacuums what was pruned
                autovacuum = j._query("SHOW autovacuum")[0][0]
                j.reclaim()
                if autovacuum == "off":
                    import time

                    deadline = time.monotonic() + 5
                    while not j._query("SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables"
                                       " WHERE relname = 'messages'")[0][0] and time.monotonic() < deadline:
                        time.sleep(0.1)
                    assert j._query("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'messages'")[0][0] == 0
            if path:
                j.reclaim()
                after = os.path.getsize(path)
                # 600 raw + 600 FHIR bodies of 4 KB gone: at least 4 MB back
                assert before - after > 4_000_000, (before, after)
        finally:
            j.close()


def _id_at(when: datetime) -> str:
    """A UUIDv7 text whose time is `when` (the engine's ids carry the receipt time)."""
    import uuid

    x, r = f"{int(when.timestamp() * 1000):012x}", uuid.uuid4().hex
    return f"{x[:8]}-{x[8:]}-7{r[:3]}-8{r[3:6]}-{r[6:18]}"


class TestDailyPartitions:
    def test_postgresql_drops_whole_days_of_bodies_and_lookups_touch_one_day(self, postgres_url: str) -> None:
        """Bodies of the days older than the retention go with their partition (the space at once, the
        metadata kept); a body is read from its own day's partition only."""
        import os
        import re
        from datetime import timedelta

        from engine.store import partitions

        now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
        noise = os.urandom(4000)  # incompressible
        ids: dict[int, list[str]] = {}
        for days in (60, 45, 1):  # an engine that ran on those days made their partitions
            then = now - timedelta(days=days)
            j = Journal(postgres_url, clock=lambda then=then: then)
            ids[days] = []
            for n in range(200):
                at = then + timedelta(seconds=n)
                msg = Inbound(_id_at(at), "adt", at, noise, "ADT^A01", f"C{days}-{n}", "FAC", "pk")
                j.receive(msg)
                j.transformed(msg.id, {"fhir": noise})
                ids[days].append(msg.id)
            j.close()
        j = Journal(postgres_url, clock=lambda: now)
        try:
            size = ("SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits"
                    " WHERE inhparent = 'bodies'::regclass")
            before = int(j._query(size)[0][0])
            explain = f"EXPLAIN SELECT body FROM bodies WHERE message_id = '{ids[45][7]}'"
            plan = "\n".join(r[0] for r in j._query(explain))
            scanned = set(re.findall(r"on (bodies_(?:\d{8}|default))\b", plan))
            assert scanned == {f"bodies_{(now - timedelta(days=45)):%Y%m%d}"}, plan

            dropped = j.drop_bodies_before(now - timedelta(days=30))
            cutoff = (now - timedelta(days=30)).date()
            assert (now - timedelta(days=60)).date() in dropped and (now - timedelta(days=45)).date() in dropped
            assert all(day < cutoff for day in dropped)
            assert (now - timedelta(days=1)).date() not in dropped
            after = int(j._query(size)[0][0])
            assert before - after > 2 * 400 * 4000, (before, after)  # 400 raw + 400 FHIR bodies of 4 KB

            gone = j.get(ids[60][0])
            assert gone is not None and gone.raw == b"" and gone.status == "transformed"  # metadata kept
            assert j.output(ids[45][0], "fhir").body == b""  # type: ignore[union-attr]
            assert j.get(ids[1][0]).raw == noise  # type: ignore[union-attr]
            assert j.output(ids[1][0], "fhir").body == noise  # type: ignore[union-attr]
            assert j.drop_bodies_before(now - timedelta(days=30)) == []
            made = partitions.partitions(j._read().cursor())  # the days ahead exist before their first message
            assert now.date() + timedelta(days=partitions.AHEAD_DAYS) in made
        finally:
            j.close()


class TestDeliveredSince:
    def test_counts_come_from_the_journal_by_destination_and_time(self, store_url: str) -> None:
        """The dashboard's delivered count per destination: what any process delivered, for the
        messages received in the window (their UUIDv7 ids), never pending or older ones."""
        import time

        j = Journal(store_url)
        try:
            def one(mid: str, when: datetime, outs: dict[str, bool]) -> None:
                j.receive(Inbound(mid, "c", when, b"MSH|x", "ADT^A01", mid[-6:], "FAC", "pk"))
                j.transformed(mid, {d: b"{}" for d in outs})
                for d, sent in outs.items():
                    if sent:
                        j.delivered(mid, d, "loc")

            now = datetime.now(UTC)
            for _ in range(3):
                one(message_id(), now, {"fhir": True, "amqp": True})
            one(message_id(), now, {"fhir": True, "amqp": False})  # amqp still pending
            one(_id_at(now - timedelta(days=2)), now - timedelta(days=2), {"fhir": True, "amqp": True})  # too old
            since = time.time() - 86400
            assert j.delivered_since(["fhir", "amqp", "ndjson"], since) == {"fhir": 4, "amqp": 3, "ndjson": 0}
            assert j.delivered_since(["fhir"], time.time() - 3 * 86400) == {"fhir": 5}
        finally:
            j.close()


def _wait_for_counters(url: str, tables: tuple[str, ...], timeout: float = 15.0) -> None:
    import time

    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            rows = conn.execute("SELECT count(*) FROM pg_stat_user_tables WHERE relname = ANY(%s)"
                                " AND n_mod_since_analyze > 0", (list(tables),)).fetchone()
            if rows and rows[0] == len(tables):
                return
            time.sleep(0.1)


class TestStatistics:
    def test_stale_tables_are_analyzed_and_the_planner_then_takes_the_key(self, postgres_url: str) -> None:
        """Without statistics the planner answered an output's body upsert through (destination,
        status), reading every delivered output of the destination; after analyze_stale it reads the
        primary key. Tables that did not change are left alone."""
        j = Journal(postgres_url)
        try:
            ids = []
            for n in range(400):
                msg = Inbound(message_id(), "c", datetime.now(UTC), b"MSH|x", "ADT^A01", f"C{n}", "FAC", "pk")
                j.receive(msg)
                j.transformed(msg.id, {"fhir": b"{}"})
                j.delivered(msg.id, "fhir", f"file:{n}")
                ids.append(msg.id)
            # A backend publishes its table counters at most once a second while busy, then after 10 s
            # idle: when the 1,200 writes take under a second (they do on a quiet machine) the counts
            # are not visible yet. A closing connection publishes them.
            j.close()
            j = Journal(postgres_url)
            _wait_for_counters(postgres_url, ("messages", "events", "outputs"))

            def subplan() -> str:
                conn = j.dialect.connect()
                try:
                    rows = conn.execute("EXPLAIN " + journal._PG_OUTPUT_BODY, (ids[-1], "fhir", b"x")).fetchall()
                    return "\n".join(str(r[0]) for r in rows)
                finally:
                    conn.rollback()
                    conn.close()

            assert "ix_outputs_destination_status" in subplan()  # the guess on a never-analyzed table
            analyzed = j.analyze_stale(only_without_autovacuum=False)
            assert {"messages", "events", "outputs"} <= set(analyzed), analyzed
            assert "lanes" not in analyzed  # untouched
            plan = subplan()
            assert "outputs_pkey" in plan or "ix_outputs_destination_message" in plan, plan
            assert j.analyze_stale(only_without_autovacuum=False) == []  # nothing changed since
        finally:
            j.close()

    def test_nothing_to_do_on_sqlite(self, tmp_path: object) -> None:
        j = Journal(f"sqlite:///{tmp_path}/wasla.db")
        try:
            assert j.analyze_stale(only_without_autovacuum=False) == []
        finally:
            j.close()


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
        before = _inbound(raw=b"MSH|^~\\&|before the key")
        plain.receive(before)
        plain.close()
        mp.setenv("WASLA_JOURNAL_KEY", base64.b64encode(os.urandom(32)).decode())  # type: ignore[attr-defined]
        sealed = Journal(store_url)
        msg = _inbound(raw=b"MSH|^~\\&|HIS|CHU|PID|1||IPP999^^^CHU^PI||SECRETFAMILY")
        sealed.receive(msg)
        sealed.transformed(msg.id, {"fhir": b'{"resourceType":"Bundle","family":"SECRETFAMILY"}'})
        assert sealed.get(msg.id).raw == msg.raw  # type: ignore[union-attr]
        assert b"SECRETFAMILY" in sealed.output(msg.id, "fhir").body  # type: ignore[union-attr]
        assert sealed.get(before.id).raw == before.raw  # type: ignore[union-attr]
        stored_at = ("SELECT raw FROM messages WHERE id = ?" if sealed.dialect.name == "sqlite" else
                     "SELECT body FROM bodies WHERE message_id = ? AND part = ''")
        stored = sealed._query(stored_at, (msg.id,))[0][0]
        assert bytes(stored).startswith(b"WSL1")
        sealed.close()

        mp.setenv("WASLA_JOURNAL_KEY", base64.b64encode(os.urandom(32)).decode())  # type: ignore[attr-defined]
        other = Journal(store_url)
        with pytest.raises(StoreError, match="another key"):
            other.get(msg.id)
        other.close()
        mp.delenv("WASLA_JOURNAL_KEY")  # type: ignore[attr-defined]
        none = Journal(store_url)
        with pytest.raises(StoreError, match="set WASLA_JOURNAL_KEY"):
            none.get(msg.id)
        assert none.search(control_id="CTRL")  # metadata stays searchable without the key
        none.close()


class TestHeadReads:
    def test_a_head_read_gives_the_first_bytes_and_the_whole_size(self, store_url: str, monkeypatch: object) -> None:
        """`head` and `output(limit=)`: what a page shows of a large body, sealed or not, without the rest."""
        import base64
        import os

        for key in (None, base64.b64encode(os.urandom(32)).decode()):
            if key:
                monkeypatch.setenv("WASLA_JOURNAL_KEY", key)  # type: ignore[attr-defined]
            j = Journal(store_url)
            raw = b"MSH|^~\\&|HIS|CHU\r" + b"".join(b"ZBN|%07d\r" % n for n in range(200_000))
            msg = _inbound(raw=raw)
            j.receive(msg)
            bundle = b'{"resourceType":"Bundle","entry":[' + b",".join(b'{"n":%d}' % n for n in range(100_000)) + b"]}"
            j.transformed(msg.id, {"fhir": bundle})
            row = j.head(msg.id, 1000)
            assert row is not None and row.raw == raw[:1000] and row.size == len(raw)
            assert j.head(msg.id, len(raw) + 1).raw == raw  # type: ignore[union-attr]
            assert j.output(msg.id, "fhir", 500).body == bundle[:500]  # type: ignore[union-attr]
            assert j.output(msg.id, "fhir").body == bundle  # type: ignore[union-attr]
            assert j.head("no-such-message", 10) is None
            j.close()


class TestReconnect:
    def test_reads_and_writes_go_on_after_postgresql_cuts_the_connections(self, postgres_url: str) -> None:
        """Found by the PostgreSQL-restart fault test: a reader whose connection the server ended kept
        failing (readiness said `journal: AdminShutdown` for ever). Now it reconnects on the next read.
        The writer already replaced its connection after the failed write."""
        import psycopg

        j = Journal(postgres_url)
        try:
            first = _inbound()
            j.receive(first)
            assert j.get(first.id) is not None
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              " WHERE datname = current_database() AND pid <> pg_backend_pid()")
            assert j.get(first.id) is not None  # the read connection was cut: a new one answers
            j.ping()
            import pytest

            from engine.errors import StoreError

            with pytest.raises(StoreError, match="AdminShutdown"):  # the write in hand fails (intake: AE, resent)
                j.receive(_inbound())
            second = _inbound()
            j.receive(second)  # and the writer has a new connection for the next
            assert j.get(second.id) is not None
        finally:
            j.close()


class TestWalBounded:
    def test_the_sqlite_wal_stays_bounded_under_steady_writes_and_reads(self, tmp_path: object) -> None:
        """Found by the soak: with writes arriving all the time and readers reading, PASSIVE checkpoints
        never let SQLite start the WAL over, and it grew without end (1.2 GB after 17,000 messages).
        Past the threshold a TRUNCATE checkpoint empties it."""
        import os
        import threading
        import time

        j = Journal(f"sqlite:///{tmp_path}/wasla.db")
        wal = f"{tmp_path}/wasla.db-wal"
        stop = threading.Event()
        checkpointer = threading.Thread(target=j._checkpoints, kwargs={"every_s": 0.05, "wal_max_bytes": 1 << 20})

        def read() -> None:
            while not stop.is_set():
                j.counts()

        reader = threading.Thread(target=read)
        checkpointer.start()
        reader.start()
        sizes: list[int] = []
        try:
            body = os.urandom(4000)
            for n in range(3000):  # 12 MB of bodies (about 40 MB of WAL pages), written while the reader reads
                j.receive(_inbound(raw=body + n.to_bytes(4, "big")))
                if n % 20 == 0 and os.path.exists(wal):
                    sizes.append(os.path.getsize(wal))
            time.sleep(0.5)  # the next checkpoint rounds, with the traffic over
            settled = os.path.getsize(wal)
        finally:
            stop.set()
            j._closing.set()
            reader.join(10)
            checkpointer.join(30)
            j.close()
        # PASSIVE only: the file never shrinks while traffic flows (SQLite reuses it from the start only
        # when a write begins after a complete checkpoint) and ends as large as it ever was.
        emptied = sum(1 for a, b in zip(sizes, sizes[1:], strict=False) if b < a)
        assert emptied >= 2, sizes
        assert settled <= 1 << 20, settled


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
