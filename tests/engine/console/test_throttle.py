"""Login throttling per user name and per client address (engine.console.throttle)."""

from __future__ import annotations

from engine.console.throttle import LoginThrottle


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestLoginThrottle:
    def test_a_name_is_locked_after_five_failures_for_a_minute(self) -> None:
        """Five failures lock the name from any address; a minute later it may try again."""
        clock = _Clock()
        throttle = LoginThrottle(clock=clock)
        for n in range(4):
            throttle.failed("ops.nuit", f"10.0.0.{n}")
        assert throttle.wait("ops.nuit", "10.0.0.9") == 0
        throttle.failed("ops.nuit", "10.0.0.5")
        assert throttle.wait("ops.nuit", "10.0.0.9") == 60
        assert throttle.wait("someone.else", "10.0.0.9") == 0
        clock.now += 61
        assert throttle.wait("ops.nuit", "10.0.0.9") == 0

    def test_an_address_is_locked_after_twenty_failures_whatever_the_names(self) -> None:
        """Twenty failures from one address, each with another name, lock that address and no other."""
        clock = _Clock()
        throttle = LoginThrottle(clock=clock)
        for n in range(19):
            throttle.failed(f"guess-{n}", "192.0.2.7")
        assert throttle.wait("ops.nuit", "192.0.2.7") == 0
        throttle.failed("guess-19", "192.0.2.7")
        assert throttle.wait("ops.nuit", "192.0.2.7") == 60
        assert throttle.wait("ops.nuit", "192.0.2.8") == 0

    def test_failures_older_than_the_window_are_forgotten(self) -> None:
        """Failures spread over more than five minutes never add up to a lock."""
        clock = _Clock()
        throttle = LoginThrottle(clock=clock)
        for n in range(40):
            throttle.failed(f"typo-{n}", "192.0.2.7")
            clock.now += 20  # 15 per five minutes
            assert throttle.wait("x", "192.0.2.7") == 0

    def test_a_try_while_locked_keeps_the_lock(self) -> None:
        """A flood that keeps trying keeps itself locked out."""
        clock = _Clock()
        throttle = LoginThrottle(clock=clock)
        for _ in range(5):
            throttle.failed("ops.nuit", "a")
        clock.now += 50
        throttle.failed("ops.nuit", "a")
        assert throttle.wait("ops.nuit", "b") == 60

    def test_success_clears_the_name_but_not_the_address(self) -> None:
        """One good account cannot reset its address's count of failures."""
        throttle = LoginThrottle(clock=_Clock())
        for n in range(4):
            throttle.failed("ops.nuit", "a")
            throttle.failed(f"g{n}", "a")
        throttle.succeeded("ops.nuit")
        throttle.failed("ops.nuit", "a")
        assert throttle.wait("ops.nuit", "b") == 0  # the name counts from zero again
        for n in range(11):
            throttle.failed(f"h{n}", "a")
        assert throttle.wait("anyone", "a") == 60  # 4 + 4 + 1 + 11 = 20 from the address

    def test_memory_is_bounded(self) -> None:
        """Past `limit` names, the least recently failing are forgotten."""
        throttle = LoginThrottle(limit=3, clock=_Clock())
        for n in range(100):
            throttle.failed(f"n{n}", f"a{n}")
        assert len(throttle._names.records) == 3 and len(throttle._addresses.records) == 3
