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
    the message. `passed` is no message status but the transform's outcome and event for a message
    no mapping of its channel takes, on a channel that passes such types on: not converted, sent as
    HL7 v2 to the destinations that forward it (the message is then transformed, delivered or filtered).
    """

    RECEIVED = "received"
    TRANSFORMED = "transformed"
    DELIVERED = "delivered"
    FAILED = "failed"
    FILTERED = "filtered"
    PARKED = "parked"
    PASSED = "passed"
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

    status: str  # transformed | passed | filtered | parked | failed | timeout
    reason: str = ""

    @property
    def ok(self) -> bool:
        """Accepted: converted, passed on unconverted (the channel says so for its type), filtered by
        the routes (no destination wants it: the sender did nothing wrong), or held until its local
        codes are mapped (it will be delivered)."""
        return self.status in (Status.TRANSFORMED, Status.PASSED, Status.FILTERED, Status.PARKED)
