"""Transform holds its batch through a journal fault: the messages behind it must not overtake it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from engine.config import load_config
from engine.ids import message_id
from engine.pipeline.transform import Transformer
from engine.runtime import Engine
from engine.transport import Delivery
from engine.types import Inbound
from tests.delivery_support import adt_msg, delivery_project
from tests.support import BrokerMessage

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def _cut_connections(postgres_url: str) -> int:
    """What a PostgreSQL restart does to the journal: every other session of its database is ended."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()
    return len(rows)


def _setup(tmp_path: Path, rabbitmq_url: str,
           postgres_url: str) -> tuple[Engine, list[Delivery], list[BrokerMessage]]:
    project, _, _ = delivery_project(tmp_path, "http://127.0.0.1:9/fhir", broker=rabbitmq_url, store=postgres_url,
                                     ndjson=True, fhir=False)
    engine = Engine(load_config(project / "config"), roles=("transform",))
    engine.broker.purge()
    batch, msgs = [], []
    for control, family in (("F1-1", "ADMIT"), ("F1-2", "MID"), ("F1-3", "FINAL")):
        mid, now, raw = message_id(), datetime.now(UTC), adt_msg(1, "A08", control, family)
        engine.journal.messages.receive(Inbound(mid, "adt-mllp", now, raw, "ADT^A08^ADT_A01", control,
                                                "CHU-IBN-SINA", "p1"))
        msgs.append(BrokerMessage())
        batch.append(Delivery(raw, {"message_id": mid, "channel": "adt-mllp", "received_at": now.isoformat(),
                                    "message_type": "ADT^A08^ADT_A01", "patient_key": "p1"}, msgs[-1]))
    return engine, batch, msgs


def test_a_journal_fault_holds_the_batch_and_tries_it_again_in_place(tmp_path: Path, rabbitmq_url: str,
                                                                      postgres_url: str) -> None:
    """Handing the batch back to RabbitMQ let the messages already prefetched behind it go first: the
    PostgreSQL-restart fault run at full size left 4 patients of 1,200 on an older version."""
    engine, batch, msgs = _setup(tmp_path, rabbitmq_url, postgres_url)
    try:
        tr = Transformer(engine.config, engine.journal, engine.broker, engine.converter)
        assert _cut_connections(postgres_url) >= 1
        tr.handle(batch)
        assert [m.calls for m in msgs] == [["ack"]] * 3  # none went back to the queue
        assert [engine.journal.messages.get(str(d.headers["message_id"])).status for d in batch] == ["transformed"] * 3
        got: list[bytes] = []
        stop = threading.Event()

        def take(deliveries: list[Delivery]) -> None:
            for d in deliveries:
                got.append(d.body)
                d.ack()
            if len(got) >= 3:
                stop.set()

        t = threading.Thread(target=engine.broker.consume, args=(engine.broker.deliver_queues("archive-ndjson"),
                                                                 take, stop), kwargs={"name": "test"}, daemon=True)
        t.start()
        stop.wait(15)
        stop.set()
        t.join(5)
        families = [next(f for f in ("ADMIT", "MID", "FINAL") if f'"family":"{f}"'.encode() in b) for b in got]
        assert families == ["ADMIT", "MID", "FINAL"]
    finally:
        engine.broker.close()
        engine.journal.close()


def test_a_stopping_process_hands_the_faulted_batch_back(tmp_path: Path, rabbitmq_url: str,
                                                         postgres_url: str) -> None:
    """Stopping, it does not wait for the journal and leaves the batch unsettled: the consumer's
    channel then closes and the broker returns the batch and everything else it held, in order
    (`test_broker`). Requeueing them one by one would put them behind what the consumer still held."""
    engine, batch, msgs = _setup(tmp_path, rabbitmq_url, postgres_url)
    try:
        stop = threading.Event()
        stop.set()
        tr = Transformer(engine.config, engine.journal, engine.broker, engine.converter, stop=stop)
        _cut_connections(postgres_url)
        tr.handle(batch)
        assert [m.calls for m in msgs] == [[]] * 3
    finally:
        engine.broker.close()
        engine.journal.close()


def test_a_message_whose_result_the_journal_refuses_fails_alone_and_the_shard_goes_on(
        tmp_path: Path, rabbitmq_url: str, postgres_url: str) -> None:
    """Before, a batch whose journal write PostgreSQL refused (not a lost connection: the same write
    fails every time) was held and tried again for ever, and its shard with it. Now each message is
    tried alone: the refused one is failed and dead-lettered with the reason, the others go on."""
    engine, batch, msgs = _setup(tmp_path, rabbitmq_url, postgres_url)
    refused = str(batch[1].headers["message_id"])
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # the database refuses one message's update
        conn.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                     f" IF NEW.id = '{refused}' AND NEW.status = 'transformed' THEN"
                     " RAISE EXCEPTION 'refused for the test'; END IF; RETURN NEW; END $$")
        conn.execute("CREATE TRIGGER refuse BEFORE UPDATE ON messages FOR EACH ROW EXECUTE FUNCTION refuse()")
    try:
        stop = threading.Event()
        tr = Transformer(engine.config, engine.journal, engine.broker, engine.converter, stop=stop)

        def work() -> None:
            try:
                tr.handle(batch)
            finally:
                engine.broker.close()  # this thread's publishing connection (the broker keeps one per thread)

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        worker.join(30)
        held = worker.is_alive()
        stop.set()  # the old code held the batch until the process stopped
        worker.join(30)
        assert not held
        assert [m.calls for m in msgs] == [["ack"], ["reject"], ["ack"]]
        rows = [engine.journal.messages.get(str(d.headers["message_id"])) for d in batch]
        assert [r.status for r in rows] == ["transformed", "failed", "transformed"]
        assert rows[1].reason == ("the journal refused to record its conversion"
                                  " (journal write failed: RaiseException (SQLSTATE P0001))")
    finally:
        engine.broker.close()
        engine.journal.close()
