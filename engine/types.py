"""Shared value types. Records carry ids and metadata; payloads stay bytes and never reach a log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["JSON", "Inbound", "Outcome", "Status"]

JSON = dict[str, Any]


class Status:
    """A message's status in the journal. Final ones: delivered, failed, filtered.

    `parked` is held, not final: a local code waits for its national mapping; adding it re-runs
    the message.
    """

    RECEIVED = "received"
    TRANSFORMED = "transformed"
    DELIVERED = "delivered"
    FAILED = "failed"
    FILTERED = "filtered"
    PARKED = "parked"
    UNFINISHED = (RECEIVED, TRANSFORMED)


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message as intake journals it, before anything else happens to it."""

    id: str
    channel: str
    received_at: datetime
    raw: bytes
    message_type: str = ""
    control_id: str = ""
    sender: str = ""
    patient_key: str = ""
    status: str = Status.RECEIVED
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a message after intake, as an input that waits for it is told."""

    status: str  # transformed | filtered | parked | failed | timeout
    reason: str = ""

    @property
    def ok(self) -> bool:
        """Accepted: converted, filtered by the routes (no destination wants it: the sender did nothing
        wrong), or held until its local codes are mapped (it will be delivered)."""
        return self.status in (Status.TRANSFORMED, Status.FILTERED, Status.PARKED)
