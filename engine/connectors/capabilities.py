"""What an output connector declares it can do, read by the deliverer instead of probing attributes."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Capabilities"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """The delivery capabilities an output declares as its class attribute `capabilities`.

    Owns the defaults a plain output gets (one message at a time, no pipeline headers). An output
    whose capabilities depend on its options replaces the attribute on the instance, in `__init__`.
    Guarantees: frozen, so the deliverer can read it once at construction.

    Args:
        concurrency: patients delivered in parallel (each patient's messages still in order); 1 means
            one message after the other.
        takes_headers: `deliver` accepts a `headers=` keyword with the pipeline headers (channel,
            message type, patient key) of the message.
        forwards_v2: `deliver` sends the message's original HL7 v2 (the journal's raw bytes), not the
            FHIR Bundle, so it can take a message no mapping converted (a channel's `unmapped_types:
            pass`); an output without it takes FHIR only.
    """

    concurrency: int = 1
    takes_headers: bool = False
    forwards_v2: bool = False
