"""Prometheus metrics: what each stage of this process did, per channel and destination.

prometheus_client (the reference Python client) holds the counters; each stage calls one of the
small functions below with ids only (channel, destination, stage), never message content. Queue
depths and blocked lanes are read at scrape time by a collector, so a scrape costs the scraper,
not the pipeline. Counters are per process: Prometheus sums the processes of a deployment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["REGISTRY", "delivered", "exposition", "failed", "received", "register_depths", "retried",
           "transformed"]

REGISTRY = CollectorRegistry()

_RECEIVED = Counter("wasla_received", "Messages journaled at intake", ["channel"], registry=REGISTRY)
_RESULT = Counter("wasla_transform_results", "Transform outcomes: transformed, filtered, parked, failed",
                  ["channel", "result"], registry=REGISTRY)
_DELIVERED = Counter("wasla_delivered", "Messages delivered to a destination", ["destination"], registry=REGISTRY)
_RETRIED = Counter("wasla_delivery_retries", "Messages sent to a delayed retry round", ["destination"],
                   registry=REGISTRY)
_DEAD = Counter("wasla_dead_letters", "Messages a destination will not take without a human", ["destination"],
                registry=REGISTRY)
_FAILED = Counter("wasla_failed", "Messages failed, by stage", ["channel", "stage"], registry=REGISTRY)
_LAST = Gauge("wasla_last_received_timestamp_seconds", "When the channel last journaled a message",
              ["channel"], registry=REGISTRY)
_CIRCUIT = Gauge("wasla_circuit_open", "1 while the destination's circuit breaker is open", ["destination"],
                 registry=REGISTRY)
_LATENCY = Histogram("wasla_delivery_latency_seconds", "From receipt to delivery", ["destination"],
                     buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200),
                     registry=REGISTRY)


def received(channel: str) -> None:
    _RECEIVED.labels(channel).inc()
    _LAST.labels(channel).set(time.time())


def transformed(channel: str, result: str) -> None:
    _RESULT.labels(channel, result).inc()
    if result == "failed":
        _FAILED.labels(channel, "transform").inc()


def failed(channel: str, stage: str) -> None:
    _FAILED.labels(channel, stage).inc()


def delivered(destination: str, latency_s: float | None) -> None:
    _DELIVERED.labels(destination).inc()
    if latency_s is not None and latency_s >= 0:
        _LATENCY.labels(destination).observe(latency_s)


def retried(destination: str, count: int = 1) -> None:
    _RETRIED.labels(destination).inc(count)


def dead(destination: str) -> None:
    _DEAD.labels(destination).inc()


def circuit(destination: str, is_open: bool) -> None:
    _CIRCUIT.labels(destination).set(1 if is_open else 0)


class _Depths(Collector):
    """Queue depths and blocked lanes, asked for at scrape time."""

    def __init__(self, depths: Callable[[], dict[str, int]], lanes: Callable[[], dict[str, int]]) -> None:
        self.depths = depths
        self.lanes = lanes

    def collect(self) -> Iterator[Any]:
        queue = GaugeMetricFamily("wasla_queue_depth", "Messages waiting in a pipeline queue", labels=["queue"])
        for name, depth in sorted(self.depths().items()):
            queue.add_metric([name], depth)
        yield queue
        blocked = GaugeMetricFamily("wasla_blocked_patients", "Patients whose later messages wait behind a"
                                    " retrying or dead message", labels=["destination"])
        for dest, n in sorted(self.lanes().items()):
            blocked.add_metric([dest], n)
        yield blocked


_registered: list[_Depths] = []


def register_depths(depths: Callable[[], dict[str, int]], lanes: Callable[[], dict[str, int]]) -> None:
    for old in _registered:
        REGISTRY.unregister(old)
    _registered[:] = [_Depths(depths, lanes)]
    REGISTRY.register(_registered[0])


def open_circuits() -> set[str]:
    return {m.labels["destination"] for metric in _CIRCUIT.collect() for m in metric.samples if m.value}


def exposition() -> bytes:
    return generate_latest(REGISTRY)
