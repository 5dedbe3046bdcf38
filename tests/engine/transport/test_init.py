"""The URL's scheme picks the transport through the alias table; callers rely on its capabilities."""

from __future__ import annotations

import pytest

import engine.transport
from engine.config import BrokerSettings
from engine.errors import ConfigError
from engine.transport import ALIASES, Capabilities, open_transport, transport_class
from engine.transport.amqp import AMQPTransport
from engine.transport.memory import MemoryTransport


class TestSchemes:
    """transport_class and open_transport: the alias table and its errors."""

    def test_each_alias_names_its_transport(self) -> None:
        """memory:// is the in-process transport; amqp:// and amqps:// are RabbitMQ."""
        assert set(ALIASES) == {"memory", "amqp", "amqps"}
        assert transport_class("memory://") is MemoryTransport
        assert transport_class("amqp://guest:guest@127.0.0.1:5672//") is AMQPTransport
        assert transport_class("amqps://u:p@rabbit.example:5671//") is AMQPTransport
        assert transport_class("AMQP://h//") is AMQPTransport

    def test_open_transport_builds_the_one_the_url_names(self) -> None:
        """open_transport connects nothing: it returns the transport with its settings and routes."""
        transport = open_transport(BrokerSettings(url="amqp://guest:guest@127.0.0.1:1//", shards=3))
        assert isinstance(transport, AMQPTransport) and len(transport.transform_queues()) == 3
        assert isinstance(open_transport(BrokerSettings()), MemoryTransport)

    def test_an_unknown_scheme_is_a_config_error_with_a_hint(self) -> None:
        """A misspelt scheme names the closest known one and all of them, on the broker.url field."""
        with pytest.raises(ConfigError, match=r"unknown broker transport 'amqqp' \(did you mean amqp://\?\)") as e:
            transport_class("amqqp://guest@h//")
        assert e.value.field == "broker.url" and "memory://, amqp://, amqps://" in e.value.message
        with pytest.raises(ConfigError, match=r"unknown broker transport 'kafka'; expected one of"):
            open_transport(BrokerSettings(url="kafka://h:9092"))

    def test_the_public_surface(self) -> None:
        """The package exports what the pipeline uses, and nothing is missing from it."""
        assert set(engine.transport.__all__) == {
            "ALIASES", "Capabilities", "Delivery", "Handler", "Route", "Transport", "hold", "open_transport",
            "received_epoch", "transport_class"}
        assert all(hasattr(engine.transport, name) for name in engine.transport.__all__)


class TestCapabilities:
    """What intake, transform, deliver, runtime and the CLI read instead of the scheme."""

    def test_memory_is_in_process_and_not_durable(self) -> None:
        """memory://: the journal is the only durability (intake commits, transform remembers its
        conversions, deliverers share a writer, readiness does not ask a broker)."""
        assert MemoryTransport.capabilities == Capabilities(in_process=True, durable_publish=False)
        assert MemoryTransport.linger_ms == 5.0

    def test_amqp_confirms_durable_publishes_across_processes(self) -> None:
        """amqp://: a publish is confirmed before intake answers AA; redeliveries are checked against
        the journal; readiness asks RabbitMQ."""
        assert AMQPTransport.capabilities == Capabilities(in_process=False, durable_publish=True)
        assert AMQPTransport.linger_ms == 20.0

    def test_capabilities_are_frozen(self) -> None:
        """No caller can flip a transport's guarantees."""
        with pytest.raises(AttributeError):
            MemoryTransport.capabilities.in_process = False  # type: ignore[misc]
