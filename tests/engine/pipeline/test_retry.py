"""The retry policy: fast tries in process, delayed rounds from the config, a dead letter when none is left."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.config import RetryConfig
from engine.errors import PermanentDeliveryError, TransientDeliveryError
from engine.pipeline.retry import ROUND, RetryPolicy, Round


def _received(hours_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours_ago)).isoformat()


class TestOf:
    def test_without_settings_three_fast_tries_and_no_delayed_round(self) -> None:
        """A destination built without `retry:` settings tries three times and then gives up."""
        assert RetryPolicy.of(None) == RetryPolicy(attempts=3, backoff_max_s=2.0, delays_s=(), max_age_s=72 * 3600)

    def test_from_the_destination_settings(self) -> None:
        """`retry:` gives the fast tries, the backoff cap, the delays and the age limit (hours to seconds)."""
        policy = RetryPolicy.of(RetryConfig(attempts=5, backoff_max_s=1.0, delays_s=(1, 2), max_age_h=0.5))
        assert policy == RetryPolicy(attempts=5, backoff_max_s=1.0, delays_s=(1, 2), max_age_s=1800)

    def test_attempts_overrides_the_settings(self) -> None:
        """An explicit number of fast tries wins over the config's and the default."""
        assert RetryPolicy.of(RetryConfig(attempts=5), attempts=1).attempts == 1
        assert RetryPolicy.of(None, attempts=7).attempts == 7


class TestTries:
    @staticmethod
    def _run(policy: RetryPolicy, failures: list[Exception], give_up: bool = False,
             attempts: int | None = None) -> int:
        calls = 0
        for attempt in policy.tries(lambda: give_up, attempts):
            with attempt:
                calls += 1
                if failures:
                    raise failures.pop(0)
        return calls

    def test_a_transient_failure_is_tried_again_until_it_succeeds(self) -> None:
        """Two timeouts, then the write goes through on the third try."""
        policy = RetryPolicy(attempts=3, backoff_max_s=0)
        assert self._run(policy, [TransientDeliveryError("a"), TransientDeliveryError("b")]) == 3

    def test_the_last_failure_is_raised_when_the_tries_are_spent(self) -> None:
        """After `attempts` transient failures the last one is raised as it is."""
        policy = RetryPolicy(attempts=2, backoff_max_s=0)
        with pytest.raises(TransientDeliveryError, match="second"):
            self._run(policy, [TransientDeliveryError("first"), TransientDeliveryError("second"),
                               TransientDeliveryError("third")])

    def test_a_permanent_failure_is_not_tried_again(self) -> None:
        """A refusal is raised at once: trying again would get the same answer."""
        failures: list[Exception] = [PermanentDeliveryError("no")]
        with pytest.raises(PermanentDeliveryError):
            self._run(RetryPolicy(attempts=3, backoff_max_s=0), failures)

    def test_give_up_stops_early(self) -> None:
        """Once the circuit is open (`give_up`), the first failure is raised: the batch waits instead."""
        with pytest.raises(TransientDeliveryError):
            self._run(RetryPolicy(attempts=5, backoff_max_s=0), [TransientDeliveryError("x")] * 5, give_up=True)

    def test_attempts_for_one_write(self) -> None:
        """A probe tries once, whatever the policy's number of fast tries."""
        calls: list[int] = []
        with pytest.raises(TransientDeliveryError):
            for attempt in RetryPolicy(attempts=5, backoff_max_s=0).tries(lambda: False, 1):
                with attempt:
                    calls.append(1)
                    raise TransientDeliveryError("down")
        assert len(calls) == 1


class TestRounds:
    def test_rounds_follow_the_delays_and_the_last_repeats(self) -> None:
        """Round n waits delays[n]; past the last, the last delay again, the round still counted."""
        policy = RetryPolicy(delays_s=(5, 30, 120))
        now = _received(0)
        assert policy.next_round({"received_at": now}) == Round(0, 0, 5)
        assert policy.next_round({"received_at": now, ROUND: 1}) == Round(1, 1, 30)
        assert policy.next_round({"received_at": now, ROUND: 7}) == Round(7, 2, 120)

    def test_a_round_counts_itself_in_the_headers(self) -> None:
        """The message published to the delay queue carries the rounds it has had, this one included."""
        headers = {"message_id": "m1", ROUND: 2}
        assert Round(2, 1, 30).headers(headers) == {"message_id": "m1", ROUND: 3}
        assert headers[ROUND] == 2

    def test_no_delays_means_no_round(self) -> None:
        """Without delayed rounds configured a message that still fails is a dead letter."""
        assert RetryPolicy(delays_s=()).next_round({"received_at": _received(0)}) is None

    def test_too_old_means_no_round(self) -> None:
        """Past `max_age_s` since receipt, no further round: a dead letter."""
        policy = RetryPolicy(delays_s=(5,), max_age_s=3600)
        assert policy.next_round({"received_at": _received(0.5)}) is not None
        assert policy.next_round({"received_at": _received(2)}) is None

    def test_exhausted_keeps_the_answer_and_says_how_many_rounds(self) -> None:
        """The dead letter's failure names the rounds it had and keeps the destination's answer."""
        exc = RetryPolicy.exhausted(TransientDeliveryError("503 from server", response="{outcome}"), {ROUND: 4})
        assert isinstance(exc, TransientDeliveryError)
        assert str(exc) == "503 from server (still failing after 4 delayed rounds)"
        assert exc.response == "{outcome}"
