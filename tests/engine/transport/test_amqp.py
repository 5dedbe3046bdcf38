"""The amqp:// transport on a real RabbitMQ: topology, quorum queues, consumers handing over shards in order."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from kombu import Connection
from kombu.exceptions import OperationalError

from engine.config import BrokerSettings
from engine.transport import Delivery, Route
from engine.transport.amqp import AMQPTransport
from tests.engine.transport.test_base import TransportBehaviour, _consume, _reject_all, _transport


@pytest.mark.rabbitmq
class TestAMQPTransport(TransportBehaviour):
    """The shared transport behaviour on the real RabbitMQ, with confirmed persistent publishes."""

    @pytest.fixture
    def url(self, rabbitmq_url: str) -> str:
        return rabbitmq_url

    @pytest.mark.rabbitmq
    def test_rabbitmq_topology(self, rabbitmq_url: str) -> None:
        """Durable queues dead-letter to wasla.dead; a rejected message lands in wasla.dead.transform."""
        transport = _transport(rabbitmq_url, shards=1)
        transport.publish_in(b"bad", message_id="m-dead", channel="adt-mllp", patient_key="", headers={})
        stop = threading.Event()
        _consume(transport, transport.transform_queues(), _reject_all(stop), stop)
        with Connection(rabbitmq_url) as conn:
            q = conn.SimpleQueue("wasla.dead.transform", no_ack=True,
                                 queue_opts={"durable": True}, exchange_opts={"durable": True, "type": "direct"})
            try:
                msg = q.get(timeout=5)
                assert msg.headers["message_id"] == "m-dead" and msg.body == b"bad"
            finally:
                q.close()


def _queue_types(url: str) -> dict[str, str]:
    import subprocess

    vhost = url.rsplit("/", 1)[1] or "/"  # the URL's virtual host (WASLA_TEST_AMQP_URL may name one)
    out = subprocess.run(["rabbitmqctl", "list_queues", "-p", vhost, "name", "type", "--quiet", "--no-table-headers"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return {name: kind for name, kind in (line.split() for line in out.splitlines() if line.startswith("wasla."))}


def test_quorum_queues_carry_messages_and_retry_rounds_come_back(rabbitmq_url: str) -> None:
    """broker.queue_type: quorum declares every queue of the topology as a quorum queue; a message
    goes through, and one sent to a retry round comes back to its shard when the TTL expires
    (dead-lettered at least once)."""
    settings = BrokerSettings(url=rabbitmq_url, shards=1, queue_type="quorum")
    broker = AMQPTransport(settings, [Route("archive-ndjson", ("adt-mllp",), delays_s=(0.5,))])
    broker.declare()
    types = _queue_types(rabbitmq_url)
    assert {q.name for q in broker.all_queues()} <= set(types)
    assert {types[q.name] for q in broker.all_queues()} == {"quorum"}
    got: list[tuple[str, bytes]] = []
    stop = threading.Event()

    def handler(batch: list[Delivery]) -> None:
        for d in batch:
            got.append((str(d.headers["message_id"]), d.body))
            d.ack()
        if len(got) == 2:
            stop.set()

    broker.publish_out(b'{"n":1}', message_id="m1", channel="adt-mllp", message_type="ADT^A01", patient_key="p1",
                       headers={"destinations": "archive-ndjson"})
    broker.publish_retry(b'{"n":2}', destination="archive-ndjson", level=0, patient_key="p1", message_id="m2",
                         headers={"message_id": "m2", "destinations": "archive-ndjson"})
    t = threading.Thread(target=broker.consume, args=(broker.deliver_queues("archive-ndjson"), handler, stop),
                         kwargs={"name": "test"}, daemon=True)
    t.start()
    stop.wait(20)
    stop.set()
    t.join(5)
    broker.close()
    assert got == [("m1", b'{"n":1}'), ("m2", b'{"n":2}')]


def test_switching_an_existing_queue_to_quorum_is_a_clear_error(rabbitmq_url: str) -> None:
    from engine.errors import BrokerError

    AMQPTransport(BrokerSettings(url=rabbitmq_url, shards=1), [Route("archive-ndjson", ("adt-mllp",))]).declare()
    quorum = AMQPTransport(BrokerSettings(url=rabbitmq_url, shards=1, queue_type="quorum"),
                    [Route("archive-ndjson", ("adt-mllp",))])
    with pytest.raises(BrokerError, match=r"queue wasla\.transform\.0 exists with other arguments.*delete_queue"):
        quorum.declare()


def test_an_idle_consumer_whose_queue_does_not_drain_starts_over(rabbitmq_url: str, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    """The watchdog: idle, while its queue holds ready messages nobody takes (here another consumer is
    the single active one and never acknowledges), the consumer reconnects instead of waiting for ever."""
    import structlog

    import engine.transport.amqp_consume as broker_module

    monkeypatch.setattr(broker_module, "_IDLE_CHECK_S", 1.0)
    broker = AMQPTransport(BrokerSettings(url=rabbitmq_url, shards=1), [Route("archive-ndjson", ("adt-mllp",))])
    broker.declare()
    for i in range(5):
        broker.publish_in(b"x", message_id=f"m{i}", channel="adt-mllp", patient_key="p", headers={})
    queue = broker.transform_queues()[0]
    with Connection(rabbitmq_url) as other:  # the active consumer: takes one, never acknowledges
        held: list[object] = []
        consumer = other.Consumer([queue], callbacks=[lambda body, message: held.append(message)],
                                  prefetch_count=1, accept=["application/octet-stream"])
        consumer.consume()
        other.drain_events(timeout=5)
        stop = threading.Event()
        got: list[Delivery] = []
        with structlog.testing.capture_logs() as logs:
            t = threading.Thread(target=broker.consume, args=([queue], got.extend, stop), kwargs={"name": "standby"},
                                 daemon=True)
            t.start()
            deadline = threading.Event()
            for _ in range(80):
                if any(e["event"] == "consumer_idle_with_ready_messages" for e in logs):
                    break
                deadline.wait(0.1)
            stop.set()
            t.join(10)
        consumer.cancel()
    broker.close()
    events = [e for e in logs if e["event"] == "consumer_idle_with_ready_messages"]
    assert events and events[0]["ready"] == 4 and got == []
    # what it tells: nothing received or handed over here; the queue has two consumers (the other is active)
    assert (events[0]["received"], events[0]["handled"], events[0]["pending"]) == (0, 0, 0)
    assert events[0]["queues"] == {queue.name: [4, 2]}
    assert any(e["event"] == "broker_connection_lost" for e in logs)  # and it started over


def _consumer_count(url: str, queue: str) -> int:
    with Connection(url) as conn:
        return int(conn.default_channel.queue_declare(queue, passive=True).consumer_count)


@pytest.mark.parametrize("leaving", ["stopping", "connection error"])
def test_a_consumer_that_goes_while_holding_messages_hands_them_over_in_order(rabbitmq_url: str,
                                                                               leaving: str) -> None:
    """Consumer A (single active on a quorum queue) takes a batch of 5 with 5 more prefetched behind it,
    then goes: stopping with the batch unsettled, or on a broker error raised under it (the idle
    watchdog's way). B, waiting, must get all 40 in publish order. Leaving by `basic.cancel` gave B
    m10 … m39 first, then m0 … m9: the full-size PostgreSQL-restart fault run lost a patient's order so."""
    settings = BrokerSettings(url=rabbitmq_url, shards=1, queue_type="quorum", prefetch=10, batch_max=5)
    broker_a = AMQPTransport(settings, [Route("archive-ndjson", ("adt-mllp",))])
    broker_a.declare()
    for i in range(40):
        broker_a.publish_in(b"x", message_id=f"m{i}", channel="adt-mllp", patient_key="p1", headers={})
    queue = broker_a.transform_queues()[0]
    stop_a, stop_b, a_took, b_waits = threading.Event(), threading.Event(), [], threading.Event()

    def handler_a(batch: list[Delivery]) -> None:
        a_took.extend(str(d.headers["message_id"]) for d in batch)
        b_waits.wait(15)  # B is registered behind A before A goes
        stop_a.set()
        if leaving == "connection error":
            raise OperationalError("the watchdog starts over")

    got: list[str] = []

    def handler_b(batch: list[Delivery]) -> None:
        for d in batch:
            got.append(str(d.headers["message_id"]))
            d.ack()
        if len(got) >= 40:
            stop_b.set()

    ta = threading.Thread(target=broker_a.consume, args=([queue], handler_a, stop_a), kwargs={"name": "a"},
                          daemon=True)
    ta.start()
    broker_b = AMQPTransport(settings, [Route("archive-ndjson", ("adt-mllp",))])
    tb = threading.Thread(target=broker_b.consume, args=([queue], handler_b, stop_b), kwargs={"name": "b"},
                          daemon=True)
    for _ in range(100):
        if a_took:
            break
        stop_b.wait(0.1)
    tb.start()
    for _ in range(100):
        if _consumer_count(rabbitmq_url, queue.name) == 2:
            break
        stop_b.wait(0.1)
    b_waits.set()
    ta.join(15)
    stop_b.wait(20)
    stop_b.set()
    tb.join(10)
    broker_a.close()
    broker_b.close()
    assert a_took == [f"m{i}" for i in range(5)]
    assert got == [f"m{i}" for i in range(40)]


@pytest.mark.parametrize("queue_type", ["quorum", "classic"])
def test_processes_of_a_role_share_the_shards_and_each_shard_keeps_its_order(
        rabbitmq_url: str, monkeypatch: pytest.MonkeyPatch, queue_type: str) -> None:
    """Single-active consumer gives every shard to the process that registered first: a second one
    waited, idle, and adding processes added nothing. A busy process now hands over what exceeds
    its fair share (4 shards, 2 processes: 2 each); each shard's messages stay in publish order
    across the handover."""
    import engine.transport.amqp_consume as broker_module

    monkeypatch.setattr(broker_module, "_BALANCE_S", 1.0, raising=False)
    settings = BrokerSettings(url=rabbitmq_url, shards=4, queue_type=queue_type, prefetch=20, batch_max=10)
    route = [Route("archive-ndjson", ("adt-mllp",))]
    publisher = AMQPTransport(settings, route)
    publisher.declare()
    queues = publisher.transform_queues()
    lock, handled = threading.Lock(), []  # (process, patient, n) in the order handled
    total = 4 * 300
    stops = [threading.Event(), threading.Event()]

    def handler_for(process: str) -> Callable[[list[Delivery]], None]:
        def handle(batch: list[Delivery]) -> None:
            with lock:
                for d in batch:
                    handled.append((process, str(d.headers["patient_key"]), int(d.headers["n"])))
            stops[0].wait(0.02)  # some work per batch, so that a shard is busy while it has messages
            for d in batch:
                d.ack()
            if len(handled) >= total:
                for s in stops:
                    s.set()
        return handle

    brokers = [AMQPTransport(settings, route), AMQPTransport(settings, route)]
    threads = [threading.Thread(target=b.consume, args=(queues, handler_for(p), stops[0]), kwargs={"name": p},
                                daemon=True) for b, p in zip(brokers, ("a", "b"), strict=True)]
    threads[0].start()  # a registers first on every shard
    for _ in range(100):
        if _consumer_count(rabbitmq_url, queues[-1].name) == 1:
            break
        stops[0].wait(0.05)
    threads[1].start()
    patients = [next(f"p{k}" for k in range(100) if publisher.shard_of(f"p{k}", "") == shard) for shard in range(4)]
    for n in range(300):
        for patient in patients:
            publisher.publish_in(b"x", message_id=f"{patient}-{n}", channel="adt-mllp", patient_key=patient,
                                 headers={"n": n})
        stops[1].wait(0.01)
    stops[0].wait(60)
    stops[0].set()
    for t in threads:
        t.join(10)
    for b in (*brokers, publisher):
        b.close()
    for patient in patients:  # each patient in publish order, whoever handled it
        assert [n for _, p, n in handled if p == patient] == list(range(300))
    late = handled[len(handled) // 2:]  # once balanced, both work: 2 shards each
    assert {p for p, _, _ in late} == {"a", "b"}
    assert {proc: len({pat for p, pat, _ in late if p == proc}) for proc in ("a", "b")} == {"a": 2, "b": 2}
