"""The PostgreSQL dialect: daily body partitions, statistics where autovacuum is off."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.ids import message_id
from engine.store import Journal
from engine.store.postgres import OUTPUT_BODY
from engine.types import Inbound


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
                j.messages.receive(msg)
                j.outputs.transformed(msg.id, {"fhir": noise})
                ids[days].append(msg.id)
            j.close()
        j = Journal(postgres_url, clock=lambda: now)
        try:
            size = ("SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits"
                    " WHERE inhparent = 'bodies'::regclass")
            before = int(j.db.query(size)[0][0])
            explain = f"EXPLAIN SELECT body FROM bodies WHERE message_id = '{ids[45][7]}'"
            plan = "\n".join(r[0] for r in j.db.query(explain))
            scanned = set(re.findall(r"on (bodies_(?:\d{8}|default))\b", plan))
            assert scanned == {f"bodies_{(now - timedelta(days=45)):%Y%m%d}"}, plan

            dropped = j.retention.drop_bodies_before(now - timedelta(days=30))
            cutoff = (now - timedelta(days=30)).date()
            assert (now - timedelta(days=60)).date() in dropped and (now - timedelta(days=45)).date() in dropped
            assert all(day < cutoff for day in dropped)
            assert (now - timedelta(days=1)).date() not in dropped
            after = int(j.db.query(size)[0][0])
            assert before - after > 2 * 400 * 4000, (before, after)  # 400 raw + 400 FHIR bodies of 4 KB

            gone = j.messages.get(ids[60][0])
            assert gone is not None and gone.raw == b"" and gone.status == "transformed"  # metadata kept
            assert j.outputs.get(ids[45][0], "fhir").body == b""  # type: ignore[union-attr]
            assert j.messages.get(ids[1][0]).raw == noise  # type: ignore[union-attr]
            assert j.outputs.get(ids[1][0], "fhir").body == noise  # type: ignore[union-attr]
            assert j.retention.drop_bodies_before(now - timedelta(days=30)) == []
            made = partitions.partitions(j.db._reader().cursor())  # the days ahead exist before their first message
            assert now.date() + timedelta(days=partitions.AHEAD_DAYS) in made
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
                j.messages.receive(msg)
                j.outputs.transformed(msg.id, {"fhir": b"{}"})
                j.outputs.delivered(msg.id, "fhir", f"file:{n}")
                ids.append(msg.id)
            # A backend publishes its table counters at most once a second while busy, then after 10 s
            # idle: when the 1,200 writes take under a second (they do on a quiet machine) the counts
            # are not visible yet. A closing connection publishes them.
            j.close()
            j = Journal(postgres_url)
            _wait_for_counters(postgres_url, ("messages", "events", "outputs"))

            def subplan() -> str:
                conn = j.db.dialect.connect()
                try:
                    rows = conn.execute("EXPLAIN " + OUTPUT_BODY, (ids[-1], "fhir", b"x")).fetchall()
                    return "\n".join(str(r[0]) for r in rows)
                finally:
                    conn.rollback()
                    conn.close()

            assert "ix_outputs_destination_status" in subplan()  # the guess on a never-analyzed table
            analyzed = j.retention.analyze_stale(only_without_autovacuum=False)
            assert {"messages", "events", "outputs"} <= set(analyzed), analyzed
            assert "lanes" not in analyzed  # untouched
            plan = subplan()
            assert "outputs_pkey" in plan or "ix_outputs_destination_message" in plan, plan
            assert j.retention.analyze_stale(only_without_autovacuum=False) == []  # nothing changed since
        finally:
            j.close()

    def test_nothing_to_do_on_sqlite(self, tmp_path: object) -> None:
        j = Journal(f"sqlite:///{tmp_path}/wasla.db")
        try:
            assert j.retention.analyze_stale(only_without_autovacuum=False) == []
        finally:
            j.close()
