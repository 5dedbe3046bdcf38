"""Shared value types: which transform outcomes an input waiting on them reports as accepted."""

from __future__ import annotations

from engine.types import Outcome, Status


def test_passed_on_unconverted_is_accepted_like_transformed() -> None:
    """A type the channel passes on (`unmapped_types: pass`) is the sender's success (issue 25): AA after the
    transform, as for converted, filtered or parked messages; failed and timed out are not."""
    assert [Outcome(s).ok for s in (Status.TRANSFORMED, Status.PASSED, Status.FILTERED, Status.PARKED)] == [True] * 4
    assert not Outcome(Status.FAILED, "at MSH-9: unsupported message type SIU^S12").ok and not Outcome("timeout").ok
