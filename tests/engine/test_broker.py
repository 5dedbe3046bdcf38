"""One broker interface, two transports: the embedded memory:// and a real RabbitMQ."""

from __future__ import annotations

import threading

import pytest
from kombu import Connection

from engine.broker import Broker, Delivery, Route
from engine.config import BrokerSettings


def _roundtrip(url: str) -> None:
    broker = Broker(BrokerSettings(url=url, shards=2), [Route("archive-ndjson", ("adt-mllp",))])
    broker.declare()
    with broker.connection() as conn:  # the memory broker is global to the process: start from empty queues
        for q in broker.all_queues():
            q(conn.channel()).purge()
    got: list[Delivery] = []
    stop = threading.Event()

    def handler(d: Delivery) -> None:
        got.append(d)
        d.ack()
        if len(got) == 2:
            stop.set()

    broker.publish_in(b"\x00raw bytes\xff", message_id="m1", channel="adt-mllp", patient_key="p1", headers={})
    broker.publish_out(b'{"x":1}', message_id="m2", channel="adt-mllp", message_type="ADT^A01", patient_key="p1",
                       headers={})
    t = threading.Thread(target=broker.consume, args=(broker.transform_queues() + broker.deliver_queues(
        "archive-ndjson"), handler, stop), kwargs={"name": "test"}, daemon=True)
    t.start()
    stop.wait(15)
    stop.set()
    t.join(5)
    broker.close()
    assert sorted((d.headers["message_id"], d.body) for d in got) == [("m1", b"\x00raw bytes\xff"),
                                                                     ("m2", b'{"x":1}')]


class TestBroker:
    def test_memory_roundtrip(self) -> None:
        """Bytes and headers survive the embedded broker unchanged, through both exchanges."""
        _roundtrip("memory://")

    @pytest.mark.rabbitmq
    def test_rabbitmq_roundtrip(self, rabbitmq_url: str) -> None:
        """The same on RabbitMQ, with confirmed persistent publishes."""
        _roundtrip(rabbitmq_url)

    @pytest.mark.rabbitmq
    def test_rabbitmq_topology(self, rabbitmq_url: str) -> None:
        """Durable queues dead-letter to wasla.dead; a rejected message lands in wasla.dead.transform."""
        broker = Broker(BrokerSettings(url=rabbitmq_url), [Route("archive-ndjson", ("adt-mllp",))])
        broker.declare()
        broker.publish_in(b"bad", message_id="m-dead", channel="adt-mllp", patient_key="", headers={})
        stop = threading.Event()

        def reject(d: Delivery) -> None:
            d.reject()
            stop.set()

        t = threading.Thread(target=broker.consume, args=(broker.transform_queues(), reject, stop),
                             kwargs={"name": "test"}, daemon=True)
        t.start()
        stop.wait(15)
        t.join(5)
        broker.close()
        with Connection(rabbitmq_url) as conn:
            q = conn.SimpleQueue("wasla.dead.transform", no_ack=True,
                                 queue_opts={"durable": True}, exchange_opts={"durable": True, "type": "direct"})
            try:
                msg = q.get(timeout=5)
                assert msg.headers["message_id"] == "m-dead" and msg.body == b"bad"
            finally:
                q.close()
