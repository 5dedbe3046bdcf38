"""Helpers the journal tests share."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.ids import message_id
from engine.types import Inbound


def inbound(channel: str = "c", raw: bytes = b"MSH|^~\\&|x") -> Inbound:
    """A new ADT^A01 received now on `channel`, with a fresh message id."""
    return Inbound(message_id(), channel, datetime.now(UTC), raw, "ADT^A01", "CTRL", "FAC", "pk")
