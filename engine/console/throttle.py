"""Wrong passwords slow the next try down: per user name and per client address.

Five wrong passwords for one name lock that name for a minute; twenty from one address within
five minutes lock that address for a minute. A try while locked counts as a failure too (a flood
keeps itself locked out) and is refused before any password is hashed. Memory is bounded: past
`limit` names or addresses, the least recently failing are forgotten.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LoginThrottle"]


@dataclass(slots=True)
class _Record:
    failures: int
    since: float
    locked_until: float


class _Counter:
    def __init__(self, threshold: int, window_s: float, lock_s: float, limit: int) -> None:
        self.threshold, self.window_s, self.lock_s, self.limit = threshold, window_s, lock_s, limit
        self.records: OrderedDict[str, _Record] = OrderedDict()

    def wait(self, key: str, now: float) -> float:
        rec = self.records.get(key)
        return max(0.0, rec.locked_until - now) if rec else 0.0

    def fail(self, key: str, now: float) -> None:
        rec = self.records.pop(key, None)
        if rec is None or now - rec.since > self.window_s and rec.locked_until <= now:
            rec = _Record(0, now, 0.0)
        rec.failures += 1
        if rec.failures >= self.threshold:
            rec.locked_until = now + self.lock_s
        self.records[key] = rec  # most recent last
        while len(self.records) > self.limit:
            self.records.popitem(last=False)

    def clear(self, key: str) -> None:
        self.records.pop(key, None)


class LoginThrottle:
    """Counts wrong passwords per user name and per client address and says how long a try must wait.
    Owns two bounded counters (at most `limit` keys each, the least recently failing forgotten
    first); every call takes one lock, so it is safe from any thread.
    """

    def __init__(self, *, name_failures: int = 5, address_failures: int = 20, window_s: float = 300.0,
                 lock_s: float = 60.0, limit: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._names = _Counter(name_failures, window_s, lock_s, limit)
        self._addresses = _Counter(address_failures, window_s, lock_s, limit)
        self._lock = threading.Lock()

    def wait(self, name: str, address: str) -> float:
        """Seconds before this name from this address may try again; 0 when it may now."""
        now = self.clock()
        with self._lock:
            return max(self._names.wait(name, now), self._addresses.wait(address, now))

    def failed(self, name: str, address: str) -> None:
        now = self.clock()
        with self._lock:
            self._names.fail(name, now)
            self._addresses.fail(address, now)

    def succeeded(self, name: str) -> None:
        """The name's count starts again; the address's does not (one good account must not reset it)."""
        with self._lock:
            self._names.clear(name)
