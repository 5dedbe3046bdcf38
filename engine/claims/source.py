"""The input connector `claims`: the channel the claims stage sends its Claims on.

It listens to nothing. A claims destination (`engine.claims.assembler`) journals each Claim it makes
as a message `FHIR^Claim` of this channel, so the channel's `output:` list decides where claims go
(the insurer's FHIR server, the insurer adapter), with the journal, retries, dead letters and replay
every other message has.
"""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any

from engine.config import ChannelConfig
from engine.connectors.inputs import INPUT_OPTIONS

__all__ = ["ClaimsInput"]


class ClaimsInput:
    """Owns nothing but its channel's identity: messages reach it from the claims stage, not a sender."""

    description = "Claims made by a claims destination (its `channel:` option); listens to nothing."
    options_spec = INPUT_OPTIONS

    def __init__(self, channel: ChannelConfig, intake: Any, executor: Executor) -> None:
        self.channel = channel

    async def start(self) -> None:
        """Nothing to open."""

    async def stop(self) -> None:
        """Nothing to close."""
