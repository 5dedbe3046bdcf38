"""The memory:// transport: RabbitMQ's routing rules, order, requeue and dead-lettering, in-process."""

from __future__ import annotations

import threading
import time

import pytest

from engine.config import BrokerSettings
from engine.transport import Delivery, Route
from engine.transport.memory import Bus, MemoryTransport, topic_matches
from tests.engine.transport.test_base import TransportBehaviour


def _bus() -> Bus:
    bus = Bus()
    bus.declare("t.0", [("in", "direct", "shard.0")], "dead", "transform")
    bus.declare("d.0", [("out", "topic", "adt_mllp.*.*.s0"), ("out", "topic", "lab.#")], "dead", "d")
    bus.declare("dead.transform", [("dead", "direct", "transform")])
    return bus


def _take(bus: Bus, queue: str, limit: int = 100, linger: float = 0.0) -> list[bytes]:
    return [e.body for e in bus.take([queue], limit, linger, threading.Event(), wait=0.05)]


class TestTopicMatching:
    """topic_matches: AMQP's `*` and `#`."""

    def test_star_is_exactly_one_word_and_hash_any_number(self) -> None:
        assert topic_matches(("a", "*", "c"), ("a", "b", "c"))
        assert not topic_matches(("a", "*", "c"), ("a", "c"))
        assert not topic_matches(("a", "*"), ("a", "b", "c"))
        assert topic_matches(("a", "#"), ("a",))
        assert topic_matches(("a", "#"), ("a", "b", "c"))
        assert topic_matches(("#", "s0"), ("x", "y", "s0"))
        assert not topic_matches(("#", "s0"), ("x", "y", "s1"))


class TestBus:
    """Bus: routing, order, requeue, dead-lettering and waking consumers."""

    def test_routes_by_direct_key_and_topic_pattern(self) -> None:
        bus = _bus()
        assert bus.publish("in", "shard.0", b"a", {}) == 1
        assert bus.publish("in", "shard.1", b"lost", {}) == 0  # unroutable, as on RabbitMQ
        assert bus.publish("out", "adt_mllp.ADT.A01.s0", b"b", {}) == 1
        assert bus.publish("out", "adt_mllp.ADT.A01.s1", b"c", {}) == 0
        assert bus.publish("out", "lab.ORU.R01.s1", b"d", {}) == 1
        assert _take(bus, "t.0") == [b"a"]
        assert _take(bus, "d.0") == [b"b", b"d"]

    def test_requeued_messages_keep_their_place(self) -> None:
        """A batch put back one by one comes out again in publish order, ahead of newer messages."""
        bus = _bus()
        for i in range(3):
            bus.publish("in", "shard.0", b"%d" % i, {})
        taken = bus.take(["t.0"], 2, 0.0, threading.Event())
        bus.publish("in", "shard.0", b"3", {})
        for e in taken:
            bus.requeue(e)
        assert _take(bus, "t.0") == [b"0", b"1", b"2", b"3"]

    def test_reject_dead_letters_through_the_queue_arguments(self) -> None:
        bus = _bus()
        bus.publish("in", "shard.0", b"bad", {"message_id": "m1"})
        (e,) = bus.take(["t.0"], 10, 0.0, threading.Event())
        bus.reject(e)
        dead = bus.take(["dead.transform"], 10, 0.0, threading.Event())
        assert [(d.body, d.headers["message_id"]) for d in dead] == [(b"bad", "m1")]

    def test_a_sleeping_consumer_wakes_for_the_first_message_and_lingers_for_more(self) -> None:
        bus = _bus()
        got: list[list[bytes]] = []
        t = threading.Thread(target=lambda: got.append(
            [e.body for e in bus.take(["t.0"], 10, 0.05, threading.Event(), wait=5)]))
        t.start()
        time.sleep(0.05)
        bus.publish("in", "shard.0", b"1", {})
        time.sleep(0.01)
        bus.publish("in", "shard.0", b"2", {})  # within the linger: same batch
        t.join(5)
        assert got == [[b"1", b"2"]]

    def test_stop_ends_a_wait_with_nothing(self) -> None:
        bus, stop = _bus(), threading.Event()
        stop.set()
        assert bus.take(["t.0"], 10, 0.0, stop, wait=5) == []


class TestMemoryTransport(TransportBehaviour):
    """The shared transport behaviour on memory://."""

    full_batches = True

    @pytest.fixture
    def url(self) -> str:
        return "memory://"

    def test_hands_back_what_a_stopping_handler_left_unsettled_in_place(self) -> None:
        """A batch a stopping handler leaves unsettled goes back where it was: the next consumer gets all, in order."""
        transport = MemoryTransport(BrokerSettings(shards=1, batch_max=3), [Route("archive-ndjson", ("adt-mllp",))])
        transport.declare()
        transport.purge()
        for i in range(6):
            transport.publish_in(b"x", message_id=f"m{i}", channel="adt-mllp", patient_key="p1", headers={})
        stop = threading.Event()
        left: list[str] = []

        def leave(batch: list[Delivery]) -> None:
            left.extend(str(d.headers["message_id"]) for d in batch)
            stop.set()

        transport.consume(transport.transform_queues(), leave, stop, name="a")
        got: list[str] = []
        stop = threading.Event()

        def take(batch: list[Delivery]) -> None:
            for d in batch:
                got.append(str(d.headers["message_id"]))
                d.ack()
            if len(got) >= 6:
                stop.set()

        t = threading.Thread(target=transport.consume, args=(transport.transform_queues(), take, stop),
                             kwargs={"name": "b"}, daemon=True)
        t.start()
        stop.wait(10)
        stop.set()
        t.join(5)
        assert left == ["m0", "m1", "m2"]
        assert got == [f"m{i}" for i in range(6)]
