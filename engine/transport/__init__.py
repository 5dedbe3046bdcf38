"""The pipeline's transports: one interface (`Transport`), one implementation per broker.

The URL's scheme picks the implementation through `ALIASES`, as kombu does:

    memory://   engine.transport.memory.MemoryTransport   queues in this process (the default)
    amqp://     engine.transport.amqp.AMQPTransport       RabbitMQ, publishes confirmed
                (its consumers: engine.transport.amqp_consume.ShardConsumer)
    amqps://    the same, over TLS

Callers decide by `Transport.capabilities`, never by the scheme.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable

from engine.config import BrokerSettings
from engine.errors import ConfigError
from engine.transport.base import Capabilities, Delivery, Handler, Transport, hold, received_epoch
from engine.transport.topology import Route

__all__ = [
    "ALIASES",
    "Capabilities",
    "Delivery",
    "Handler",
    "Route",
    "Transport",
    "hold",
    "open_transport",
    "received_epoch",
    "transport_class",
]

ALIASES: dict[str, str] = {
    "memory": "engine.transport.memory:MemoryTransport",
    "amqp": "engine.transport.amqp:AMQPTransport",
    "amqps": "engine.transport.amqp:AMQPTransport",
}


def transport_class(url: str) -> type[Transport]:
    """The transport for `url`'s scheme; a `ConfigError` (field `broker.url`) naming the known
    schemes, and the closest one, if it is not in `ALIASES`."""
    scheme = url.partition("://")[0].lower() if "://" in url else url.lower()
    target = ALIASES.get(scheme)
    if target is None:
        close = difflib.get_close_matches(scheme, ALIASES, n=1)
        hint = f" (did you mean {close[0]}://?)" if close else ""
        raise ConfigError(f"unknown broker transport '{scheme}'{hint}; expected one of: "
                          f"{', '.join(f'{a}://' for a in ALIASES)}", field="broker.url")
    module, _, name = target.partition(":")
    found: type[Transport] = getattr(importlib.import_module(module), name)
    return found


def open_transport(settings: BrokerSettings, routes: Iterable[Route] = ()) -> Transport:
    """The transport `settings.url` names, for these destination routes (nothing is connected yet)."""
    return transport_class(settings.url)(settings, routes)
