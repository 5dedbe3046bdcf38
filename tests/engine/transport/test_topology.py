"""The pipeline's names and shard arithmetic: the same on every transport."""

from __future__ import annotations

import zlib

from engine.transport.amqp import RabbitTopology
from engine.transport.topology import Route, Topology, segment, shard_of

ROUTES = [Route("archive-ndjson", ("adt-mllp",), types=("ADT^A01", "ORU^*"), delays_s=(0.5, 2.0))]


class TestTopology:
    """Topology and RabbitTopology: names, keys, bindings and queue arguments."""

    def test_a_patient_always_goes_to_one_shard(self) -> None:
        """The shard is crc32 of the patient key (the message id without one), modulo the shards."""
        assert shard_of("P1", "m1", 4) == zlib.crc32(b"P1") % 4
        assert shard_of("", "m1", 4) == zlib.crc32(b"m1") % 4
        topology = Topology(4, ROUTES)
        assert topology.in_key("P1", "m9") == f"shard.{shard_of('P1', '', 4)}"

    def test_routing_keys_are_words_of_safe_characters(self) -> None:
        """Channel, type and event become one routing-key word each; an event-less type is `none`."""
        assert segment("lab.central/x") == "lab_central_x" and segment("") == "_"
        topology = Topology(1, ROUTES)
        assert topology.out_key("adt-mllp", "ADT^A01", "P1", "m1") == "adt-mllp.ADT.A01.s0"
        assert topology.out_key("adt-mllp", "MDM", "P1", "m1") == "adt-mllp.MDM.none.s0"
        assert topology.retry_key("archive-ndjson", 1, "P1", "m1") == "archive-ndjson.1.0"

    def test_the_queues_of_a_route(self) -> None:
        """Shards per role, a dead queue per role, a delay queue per retry round."""
        topology = Topology(2, ROUTES)
        assert [q.name for q in topology.all_queues()] == [
            "wasla.transform.0", "wasla.transform.1", "wasla.dead.transform", "wasla.dead.archive-ndjson",
            "wasla.deliver.archive-ndjson.0", "wasla.deliver.archive-ndjson.1",
            "wasla.retry.archive-ndjson.0", "wasla.retry.archive-ndjson.1"]
        deliver = topology.deliver_queues("archive-ndjson")[1]
        assert {(b.exchange.name, b.routing_key) for b in deliver.bindings} == {
            ("wasla.out", "adt-mllp.ADT.A01.s1"), ("wasla.out", "adt-mllp.ORU.*.s1"),
            ("wasla.redeliver", "archive-ndjson.*.1")}
        assert topology.retry_queues("archive-ndjson")[1].queue_arguments == {
            "x-message-ttl": 2000, "x-dead-letter-exchange": "wasla.redeliver"}
        assert topology.transform_queues()[0].queue_arguments == {
            "x-dead-letter-exchange": "wasla.dead", "x-dead-letter-routing-key": "transform"}

    def test_rabbitmq_adds_single_active_consumer_and_quorum_arguments(self) -> None:
        """On RabbitMQ a shard queue has one active consumer; quorum replicates and dead-letters at least once."""
        classic = RabbitTopology(1, ROUTES, "classic").transform_queues()[0].queue_arguments
        assert classic == {"x-dead-letter-exchange": "wasla.dead", "x-dead-letter-routing-key": "transform",
                           "x-single-active-consumer": True}
        quorum = RabbitTopology(1, ROUTES, "quorum")
        assert quorum.transform_queues()[0].queue_arguments == {
            **classic, "x-queue-type": "quorum", "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish"}
        assert quorum.dead_queues()[0].queue_arguments == {"x-queue-type": "quorum"}
        assert RabbitTopology(1, ROUTES, "classic").dead_queues()[0].queue_arguments is None
