"""The AMQP destination against a real RabbitMQ: a consumer reads what Wasla published to an external
exchange (persistent, confirmed, headers with the message id and type); an exchange that routes the
message nowhere is a dead letter, not a silent drop."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pika

from channels.amqp import _pika_url
from engine.store import Journal
from tests.delivery_support import adt_msg, send_all
from tests.support import make_project, port_of, start_engine, stop_engine, wait_port


def _project(tmp_path: Path, url: str, exchange: str) -> Path:
    project = make_project(tmp_path)
    (project / "config" / "destinations" / "claims.yaml").write_text(
        f"amqp:\n  url: {url}\n  exchange: {exchange}\n  routing_key: 'wasla.{{channel}}.{{type}}.{{event}}'\n"
        "retry:\n  attempts: 1\n  delays_s: [1]\n")
    ch = project / "config" / "channels" / "adt-mllp.yaml"
    ch.write_text(ch.read_text().replace("  - archive-ndjson\n", "  - claims\n"))
    return project


def test_published_to_the_external_exchange_and_read_by_a_consumer(tmp_path: Path, rabbitmq_url: str) -> None:
    exchange, queue = f"ext-{uuid.uuid4().hex[:8]}", f"ext-claims-{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(pika.URLParameters(_pika_url(rabbitmq_url)))
    ch = conn.channel()
    ch.exchange_declare(exchange, "topic", durable=True)
    ch.queue_declare(queue, durable=True)
    ch.queue_bind(queue, exchange, "wasla.adt-mllp.ADT.*")
    project = _project(tmp_path, rabbitmq_url, exchange)
    proc = start_engine(project)
    try:
        wait_port(port_of(project), proc=proc)
        assert send_all(port_of(project), [adt_msg(n, "A01", f"Q{n}", "X") for n in range(3)]) == {"AA": 3}
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 3 and time.monotonic() < deadline:
            method, props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                time.sleep(0.2)
                continue
            got.append((method, props, body))
        assert len(got) == 3
        journal = Journal(f"sqlite:///{project}/var/wasla.db")
        ids = {r.control_id: r.id for r in journal.messages.search()}
        for n, (method, props, body) in enumerate(got):
            assert method.routing_key == "wasla.adt-mllp.ADT.A01"
            assert props.delivery_mode == 2 and props.content_type == "application/fhir+json"
            assert props.message_id == ids[f"Q{n}"] == props.headers["wasla-message-id"]  # in order
            assert props.headers["wasla-message-type"] == props.type == "ADT^A01"
            assert orjson.loads(body)["resourceType"] == "Bundle"
        deadline = time.monotonic() + 10
        while journal.messages.counts() != {"delivered": 3} and time.monotonic() < deadline:
            time.sleep(0.2)
        assert journal.messages.counts() == {"delivered": 3}
        assert journal.outputs.get(ids["Q0"], "claims").location == f"{exchange}/wasla.adt-mllp.ADT.A01"  # type: ignore[union-attr]

        ch.queue_unbind(queue, exchange, "wasla.adt-mllp.ADT.*")  # nobody listens now: mandatory says so
        assert send_all(port_of(project), [adt_msg(9, "A01", "Q9", "X")]) == {"AA": 1}
        deadline = time.monotonic() + 20
        while journal.messages.counts().get("failed", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        (row,) = journal.messages.search(status="failed")
        assert row.control_id == "Q9" and "routes key wasla.adt-mllp.ADT.A01 to no queue" in row.reason
        journal.close()
    finally:
        stop_engine(proc)
        ch.queue_delete(queue)
        ch.exchange_delete(exchange)
        conn.close()
