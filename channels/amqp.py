"""AMQP destination: each Bundle published to an exchange of another broker (the insurer's, a warehouse's).

pika, not kombu: the publish must be *mandatory* (an exchange that routes it nowhere is an
error, not a silent drop) and *confirmed* (the broker has it on disk before the message counts
as delivered), and pika's BlockingChannel raises exactly those two refusals. Messages are
persistent and carry the message id and type in their properties and headers, so the consumer
can deduplicate a resend after a lost confirm (at-least-once, idempotent by message id).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import orjson
import pika
import pika.exceptions

from engine.connectors.capabilities import Capabilities
from engine.connectors.fields import Field, options_of
from engine.connectors.ports import OutputLedger
from engine.connectors.toolkit import DestinationConfig
from engine.errors import PermanentDeliveryError, TransientDeliveryError

__all__ = ["AMQPOutput"]


AMQP_OPTIONS = (
    Field("url", "string", required=True, pattern="^amqps?://",
          description="Broker URL; ${ENV} references keep the password out of the file.",
          examples=("amqp://wasla:${AMQP_PASSWORD}@mq.cnss.ma/claims",)),
    Field("exchange", "string", required=True, min_length=1),
    Field("routing_key", "string", default="{channel}.{type}.{event}",
          description="Routing key template: {channel}, {type}, {event}."),
    Field("confirm_timeout_s", "number", exclusive_minimum=0, default=10),
)


class AMQPOutput:
    """The outbound connector `amqp`: owns one publishing channel per delivering thread to another broker.
    Options: `AMQP_OPTIONS`."""

    description = ("Publish each Bundle to an exchange of another AMQP broker (the insurer's, the warehouse's), "
                   "persistent, mandatory, with publisher confirms.")
    options_spec = AMQP_OPTIONS
    capabilities = Capabilities(takes_headers=True)  # channel and message type make the routing key

    def __init__(self, config: DestinationConfig, root: Any = None) -> None:
        o = self.options = options_of(self, config.options)
        self.id = config.id
        self.url = _pika_url(str(o.url))
        self.exchange = str(o.exchange)
        self.template = str(o.routing_key)
        self.confirm_timeout = float(o.confirm_timeout_s)
        self._local = threading.local()

    def _channel(self) -> Any:
        ch = getattr(self._local, "channel", None)
        if ch is None or ch.is_closed:
            params = pika.URLParameters(self.url)
            params.blocked_connection_timeout = self.confirm_timeout
            params.socket_timeout = self.confirm_timeout
            conn = pika.BlockingConnection(params)
            ch = conn.channel()
            ch.confirm_delivery()
            self._local.conn, self._local.channel = conn, ch
        return ch

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = self._local.channel = None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken
                conn.close()

    def deliver(self, message_id: str, body: bytes, journal: OutputLedger,
                headers: dict[str, Any] | None = None) -> str:
        h = headers if headers is not None else _headers_of(body)
        mtype, _, event = str(h.get("message_type", "")).partition("^")
        key = self.template.format(channel=h.get("channel", ""), type=mtype, event=event)
        props = pika.BasicProperties(content_type="application/fhir+json", delivery_mode=2, message_id=message_id,
                                     type=str(h.get("message_type", "")),
                                     headers={"wasla-message-id": message_id,
                                              "wasla-message-type": str(h.get("message_type", ""))})
        try:
            self._channel().basic_publish(self.exchange, key, body, props, mandatory=True)
        except pika.exceptions.UnroutableError as exc:
            self._drop()
            raise PermanentDeliveryError(f"exchange {self.exchange} routes key {key} to no queue") from exc
        except pika.exceptions.NackError as exc:
            self._drop()
            raise TransientDeliveryError(f"broker refused the publish (nack) on {self.exchange}") from exc
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._drop()
            if exc.reply_code == 404:
                raise PermanentDeliveryError(f"no exchange {self.exchange}: {exc.reply_text}") from exc
            raise TransientDeliveryError(f"channel closed by the broker ({exc.reply_code})") from exc
        except (pika.exceptions.AMQPError, OSError) as exc:
            self._drop()
            raise TransientDeliveryError(f"cannot publish to {self.exchange}: {exc.__class__.__name__}") from exc
        return f"{self.exchange}/{key}"

    def close(self) -> None:
        self._drop()


def _pika_url(url: str) -> str:
    """kombu's `amqp://host//` (the default vhost "/") is `amqp://host/%2F` to pika, which reads `//` as "" ."""
    scheme, sep, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    if slash and path.split("?")[0] == "/":
        return f"{scheme}{sep}{host}/%2F" + path[1:]
    return url


def _headers_of(body: bytes) -> dict[str, Any]:
    """Message type from the Bundle's Provenance when the pipeline headers are not at hand."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    for e in doc.get("entry", []):
        res = e.get("resource", {})
        if res.get("resourceType") == "Provenance":
            display = str(((res.get("entity") or [{}])[0].get("what") or {}).get("display", ""))
            return {"message_type": display.removeprefix("HL7 v2 ").removesuffix(" message")}
    return {}
