"""A destination's retry policy: how often to try again now, when to try again later, when to give up.

A transient failure is tried again a few times in process, jittered and exponentially spaced (tenacity),
stopping early once the circuit is open. Then the message takes a round in a broker delay queue (5 s,
30 s, 2 min … from `retry.delays_s`, the last repeating), the rounds counted in its `x-wasla-round`
header; with no delay rounds, or once it is older than `retry.max_age_h`, it is a dead letter. A journal
fault pauses delivery `PAUSE_S` before the same messages are tried again.

The policy only decides; the deliverer journals, publishes and settles what it decides.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_random_exponential

from engine.config import RetryConfig
from engine.errors import DeliveryError, TransientDeliveryError
from engine.transport import received_epoch

__all__ = ["PAUSE_S", "ROUND", "RetryPolicy", "Round"]

ROUND = "x-wasla-round"  # the pipeline header counting the delayed rounds a message has had
PAUSE_S = 0.5  # how long a journal fault pauses delivery before the same messages are tried again


@dataclass(frozen=True)
class Round:
    """A message's next delayed round: how many it has had (`level`), the delay queue it goes to (`queue`,
    the last one repeating) and that queue's delay. `headers` gives the message's headers counting it."""

    level: int
    queue: int
    delay_s: float

    def headers(self, headers: dict[str, Any]) -> dict[str, Any]:
        """`headers` with this round counted, for the message published to the delay queue."""
        return {**headers, ROUND: self.level + 1}


@dataclass(frozen=True)
class RetryPolicy:
    """A destination's retry policy: `attempts` fast tries in process (jittered exponential backoff up to
    `backoff_max_s`), then the delayed rounds `delays_s` until `max_age_s` after receipt. Immutable; it
    decides and sleeps only between fast tries, and guarantees a message with no round left is given up
    (a dead letter), never retried forever."""

    attempts: int = 3
    backoff_max_s: float = 2.0
    delays_s: tuple[float, ...] = ()
    max_age_s: float = 72.0 * 3600

    @classmethod
    def of(cls, config: RetryConfig | None, attempts: int | None = None) -> RetryPolicy:
        """The policy of a destination's `retry:` settings; without them, 3 fast tries and no delayed round.
        `attempts` overrides the number of fast tries."""
        if config is None:
            return cls(attempts=attempts if attempts is not None else 3)
        return cls(attempts=attempts if attempts is not None else config.attempts,
                   backoff_max_s=config.backoff_max_s, delays_s=config.delays_s, max_age_s=config.max_age_h * 3600)

    def tries(self, give_up: Callable[[], bool], attempts: int | None = None) -> Retrying:
        """The fast tries of one write (`attempts`, else the policy's): each transient failure is tried again
        after a jittered pause, until the tries are spent or `give_up()` (the circuit opened: the batch
        waits instead); the last failure is raised."""
        limit = attempts or self.attempts

        def stop(state: RetryCallState) -> bool:
            return bool(state.attempt_number >= limit or give_up())

        return Retrying(retry=retry_if_exception_type(TransientDeliveryError), stop=stop,
                        wait=wait_random_exponential(multiplier=0.05, max=self.backoff_max_s), reraise=True)

    def next_round(self, headers: dict[str, Any]) -> Round | None:
        """The delayed round a message with these pipeline headers goes to next; None when it has none
        left (no delay rounds, or older than `max_age_s`): it is a dead letter."""
        if not self.delays_s or age_s(headers) > self.max_age_s:
            return None
        level = rounds_of(headers)
        queue = min(level, len(self.delays_s) - 1)
        return Round(level, queue, self.delays_s[queue])

    @staticmethod
    def exhausted(exc: DeliveryError, headers: dict[str, Any]) -> TransientDeliveryError:
        """The failure a given-up message is a dead letter with: `exc`, the rounds it had, the answer kept."""
        return TransientDeliveryError(f"{exc} (still failing after {rounds_of(headers)} delayed rounds)",
                                      response=exc.response)


def rounds_of(headers: dict[str, Any]) -> int:
    """How many delayed rounds a message has had, from its pipeline headers."""
    return int(headers.get(ROUND, 0) or 0)


def age_s(headers: dict[str, Any]) -> float:
    """Seconds since the message was received (its `received_at` header; 0 without one)."""
    now = time.time()
    return now - received_epoch(headers, now)
