"""A circuit breaker per destination: stop hammering a destination that is down, probe it instead.

After `failures` consecutive transient failures the circuit opens: the deliverer takes no new
work, waits, and sends one message as a probe, waiting longer after each failed probe (up to
`probe_max_s`, kept under the broker's heartbeat timeout). One success closes it. While it is
open nothing is retried and nothing is logged per message: one line when it opens, one when it
closes.
"""

from __future__ import annotations

import threading
import time

import structlog

from engine import metrics

__all__ = ["Breaker"]

_log = structlog.get_logger("wasla.deliver")


class Breaker:
    """One destination's circuit: counts consecutive transient failures, opens after `failures` of them,
    and spaces probes while open (doubling up to `probe_max_s`); one success closes it. Logs once on
    opening and once on closing. Counting a failure takes a lock.
    """

    def __init__(self, destination: str, failures: int = 5, probe_max_s: float = 15.0) -> None:
        self.destination = destination
        self.failures = failures
        self.probe_max_s = probe_max_s
        self.consecutive = 0
        self.is_open = False
        self.opened_at = 0.0
        self._interval = 1.0
        self._next_probe = 0.0
        self.probes = 0
        self._lock = threading.Lock()

    def success(self) -> None:
        if self.is_open:
            metrics.circuit(self.destination, False)
            _log.warning("circuit_closed", destination=self.destination, probes=self.probes,
                         open_s=round(time.monotonic() - self.opened_at, 1))
        self.consecutive = 0
        self.is_open = False
        self._interval = 1.0
        self.probes = 0

    def failure(self) -> None:
        with self._lock:
            self.consecutive += 1
            opened = not self.is_open and self.consecutive >= self.failures
            if opened:
                self.is_open = True
        if opened:
            self.opened_at = time.monotonic()
            self._next_probe = self.opened_at + self._interval
            metrics.circuit(self.destination, True)
            _log.warning("circuit_open", destination=self.destination, failures=self.consecutive)

    def probe_failed(self) -> None:
        self.probes += 1
        self._interval = min(self._interval * 2, self.probe_max_s)
        self._next_probe = time.monotonic() + self._interval

    def probe_in(self) -> float:
        """Seconds until the next probe is due."""
        return max(0.0, self._next_probe - time.monotonic())
