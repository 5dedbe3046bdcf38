"""One transport interface, every broker: the behaviour the pipeline relies on, whatever the scheme.

`TransportBehaviour` is subclassed per transport (kombu's `BasicFunctionality` pattern):
`tests/engine/transport/test_memory.py` runs it on memory://, `test_amqp.py` on the real RabbitMQ.
"""

from __future__ import annotations

import threading
import time

import pytest
from kombu import Queue

from engine.config import BrokerSettings
from engine.transport import Delivery, Handler, Route, Transport, open_transport

ROUTES = [Route("archive-ndjson", ("adt-mllp",))]


def _transport(url: str, shards: int) -> Transport:
    transport = open_transport(BrokerSettings(url=url, shards=shards), ROUTES)
    transport.declare()
    transport.purge()  # the memory bus is global to the process: start from empty queues
    return transport


def _reject_all(stop: threading.Event) -> Handler:
    """A handler that rejects every delivery of its batch (dead-lettering it), then sets `stop`."""
    def reject(batch: list[Delivery]) -> None:
        for d in batch:
            d.reject()
        stop.set()
    return reject


def _consume(transport: Transport, queues: list[Queue], handler: Handler, stop: threading.Event,
             max_batch: int | None = None) -> None:
    t = threading.Thread(target=transport.consume, args=(queues, handler, stop),
                         kwargs={"name": "test", "max_batch": max_batch}, daemon=True)
    t.start()
    stop.wait(15)
    stop.set()
    t.join(5)
    transport.close()


def roundtrip(url: str) -> None:
    """Publish one message to wasla.in and one to wasla.out, consume both; bytes and headers unchanged."""
    transport = _transport(url, shards=2)
    got: list[Delivery] = []
    stop = threading.Event()

    def handler(batch: list[Delivery]) -> None:
        for d in batch:
            got.append(d)
            d.ack()
        if len(got) == 2:
            stop.set()

    transport.publish_in(b"\x00raw bytes\xff", message_id="m1", channel="adt-mllp", patient_key="p1", headers={})
    transport.publish_out(b'{"x":1}', message_id="m2", channel="adt-mllp", message_type="ADT^A01", patient_key="p1",
                          headers={})
    _consume(transport, transport.transform_queues() + transport.deliver_queues("archive-ndjson"), handler, stop)
    assert sorted((d.headers["message_id"], d.body) for d in got) == [("m1", b"\x00raw bytes\xff"),
                                                                     ("m2", b'{"x":1}')]


def batches(url: str) -> list[list[str]]:
    """50 messages already waiting in one shard, consumed with max_batch 20."""
    transport = _transport(url, shards=1)
    for i in range(50):
        transport.publish_in(b"x", message_id=f"m{i}", channel="adt-mllp", patient_key="p1", headers={})
    seen: list[list[str]] = []
    stop = threading.Event()

    def handler(batch: list[Delivery]) -> None:
        seen.append([str(d.headers["message_id"]) for d in batch])
        for d in batch:
            d.ack()
        if sum(map(len, seen)) >= 50:
            stop.set()

    _consume(transport, transport.transform_queues(), handler, stop, max_batch=20)
    return seen


class TransportBehaviour:
    """What every transport does the same; a subclass provides the `url` fixture."""

    full_batches = False  # every batch but the last is exactly max_batch (messages already waiting)

    @pytest.fixture
    def url(self) -> str:
        raise NotImplementedError

    def test_batches_keep_order(self, url: str) -> None:
        """What is waiting is handed over in batches of at most max_batch, in queue order."""
        seen = batches(url)
        assert [m for b in seen for m in b] == [f"m{i}" for i in range(50)]
        assert max(map(len, seen)) <= 20 and len(seen) < 50
        if self.full_batches:
            assert max(map(len, seen)) == 20

    def test_roundtrip(self, url: str) -> None:
        """Bytes and headers survive the transport unchanged, through both exchanges."""
        roundtrip(url)

    def test_a_rejected_message_lands_in_its_dead_queue(self, url: str) -> None:
        """A rejected transform message is dead-lettered to wasla.dead.transform, the others stay put."""
        transport = _transport(url, shards=1)
        transport.publish_in(b"bad", message_id="m-dead", channel="adt-mllp", patient_key="", headers={})
        stop = threading.Event()
        _consume(transport, transport.transform_queues(), _reject_all(stop), stop)
        depths: dict[str, int] = {}
        for _ in range(50):  # RabbitMQ dead-letters asynchronously
            depths = transport.depths()
            if depths.get("wasla.dead.transform"):
                break
            time.sleep(0.1)
        assert depths["wasla.dead.transform"] == 1 and depths["wasla.transform.0"] == 0
        transport.purge()

    def test_in_flight_counts_the_handlers_running(self, url: str) -> None:
        """`in_flight` is 1 while a handler holds its batch and 0 once it returned (a graceful stop waits on it)."""
        transport = _transport(url, shards=1)
        transport.publish_in(b"x", message_id="m1", channel="adt-mllp", patient_key="p", headers={})
        during: list[int] = []
        stop = threading.Event()

        def handler(batch: list[Delivery]) -> None:
            during.append(transport.in_flight())
            for d in batch:
                d.ack()
            stop.set()

        _consume(transport, transport.transform_queues(), handler, stop)
        assert during == [1] and transport.in_flight() == 0
