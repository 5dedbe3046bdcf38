"""The engine process: the roles it was asked to run, sharing one journal, broker and converter.

`wasla run` runs intake, transform and deliver together; `--role` picks some, so several
processes (on several machines, sharing a RabbitMQ and a PostgreSQL) can split the work.
Intake recovers unfinished messages before it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import structlog

from engine import metrics
from engine.config import Config
from engine.connectors.registry import connector
from engine.errors import ConfigErrors
from engine.mapping import Converter
from engine.ops import OpsServer
from engine.pipeline.deliver import Deliverer
from engine.pipeline.intake import Intake
from engine.pipeline.outcomes import Outcomes
from engine.pipeline.parking import NomenclatureWatcher
from engine.pipeline.replay import Replayer
from engine.pipeline.route import check_conditions
from engine.pipeline.transform import Transformer
from engine.store import Journal
from engine.transport import Route, open_transport

__all__ = ["ROLES", "Engine", "make_converter", "tune_gc"]

ROLES = ("intake", "transform", "deliver")
_log = structlog.get_logger("wasla.engine")


def make_converter(config: Config) -> Converter:
    return Converter(config.mappings_dir, config.config_dir / "schema", config.nomenclatures_dir / "hl7v2-fhir",
                     base=config.fhir_base, timezone=config.timezone)


def routes_of(config: Config) -> list[Route]:
    return [Route(d.id, tuple(ch.id for ch in config.channels
                              if ch.enabled and (d.id in ch.outputs or ch.id in d.route.channels)),
                  d.route.types, d.retry.delays_s)
            for d in config.destinations.values()]


def tune_gc() -> None:
    """Keep the cyclic garbage collector off the hot path.

    Each message allocates thousands of short-lived dicts and lists (none in cycles: they die by
    reference counting), yet every 700 allocations CPython walks generation 0, and later the
    whole heap of compiled mappings and vocabularies. Freezing what is loaded at start and
    collecting less often keeps that off the transform (bench/results/2026-11-24-convert.md);
    cycles are still collected.
    """
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)


class Engine:
    """One engine process: the roles it was asked to run (intake, transform, deliver), with the journal,
    broker, converter and outcomes they share and the threads it starts for them. Compiles every
    mapping before taking any message; `close` stops the threads, then closes outputs, broker and
    journal.
    """

    def __init__(self, config: Config, roles: tuple[str, ...] = ROLES) -> None:
        self.config = config
        self.roles = roles
        self.stop_event = threading.Event()
        errors = check_conditions(config)  # route.when: checked where the mapping language is available
        if errors:
            raise ConfigErrors(errors)
        self.converter = make_converter(config)
        for ch in config.channels:
            for name in ch.mapping_names():
                self.converter.spec(name)  # compile every mapping before taking any message
        self.journal = Journal(config.store.url, group_commit_ms=config.store.group_commit_ms)
        self.broker = open_transport(config.broker, routes_of(config))
        self.broker.declare()
        self.outcomes = Outcomes(self.journal, local="transform" in roles)
        tune_gc()
        self.threads: list[threading.Thread] = []
        self.draining = False
        self.outputs: list[Any] = []
        self.started = False
        self._depth_cache: tuple[float, dict[str, int]] = (0.0, {})

    def _retention(self, stop: threading.Event) -> None:
        """Prune each channel's journal on its retention, then give the space back (engine.store.retention)."""
        while not stop.wait(self.config.retention.every_s):
            total = self._drop_days()
            for ch in self.config.channels:
                keep = ch.retention or self.config.retention
                try:
                    done = self.journal.retention.prune(ch.id, keep.bodies_days, keep.metadata_days)
                except Exception as exc:  # noqa: BLE001 - a failed prune is retried next time, never fatal
                    _log.error("retention_failed", channel=ch.id, error=exc.__class__.__name__)
                    continue
                total += done.bodies + done.messages
                if done.bodies or done.messages:
                    _log.info("retention", channel=ch.id, bodies_erased=done.bodies, messages_deleted=done.messages)
            if total:
                self.journal.retention.reclaim()

    def _statistics(self, stop: threading.Event, every_s: float = 20.0) -> None:
        """PostgreSQL without autovacuum: keep the planner's statistics current (Journal.analyze_stale)."""
        while not stop.wait(every_s):
            try:
                tables = self.journal.retention.analyze_stale()
            except Exception as exc:  # noqa: BLE001 - retried on the next run, never fatal
                _log.error("statistics_failed", error=exc.__class__.__name__)
                continue
            if tables:
                _log.debug("statistics", tables=tables)

    def _drop_days(self) -> int:
        """PostgreSQL: make the coming days' body partitions; drop the days past every channel's retention."""
        keeps = [ch.retention or self.config.retention for ch in self.config.channels] or [self.config.retention]
        try:
            self.journal.retention.ensure_partitions()
            dropped = self.journal.retention.drop_bodies_before(
                self.journal.db.clock() - timedelta(days=max(k.bodies_days for k in keeps)))
        except Exception as exc:  # noqa: BLE001 - retried on the next run, never fatal
            _log.error("retention_failed", channel="*", error=exc.__class__.__name__)
            return 0
        if dropped:
            _log.info("retention_days_dropped", days=[d.isoformat() for d in dropped])
        return len(dropped)

    def _thread(self, name: str, target: Any) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self.threads.append(t)

    def start_workers(self) -> None:
        modes = tuple(m for m in ("transform", "deliver") if m in self.roles)
        if modes:  # operators' replays (wasla messages replay, the console) reach the pipeline from here
            replayer = Replayer(self.journal, self.broker, modes)
            self._thread("replay", lambda: replayer.run(self.stop_event))
        if "transform" in self.roles:
            tr = Transformer(self.config, self.journal, self.broker, self.converter, self.outcomes,
                             stop=self.stop_event)
            queues = self.broker.transform_queues()
            self._thread("transform", lambda: self.broker.consume(queues, tr.handle, self.stop_event, name="transform"))
            self._thread("retention", lambda: self._retention(self.stop_event))
            if self.journal.db.dialect.needs_statistics:
                self._thread("statistics", lambda: self._statistics(self.stop_event))
            watcher = NomenclatureWatcher(self.config.nomenclatures_dir, self.config.fhir_base, self.converter,
                                          self.journal, self.broker)
            self._thread("nomenclature", lambda: watcher.run(self.stop_event))
        if "deliver" in self.roles:
            for dest in self.config.destinations.values():
                output = connector("outputs", dest.kind)(dest, self.config.root)
                attach = getattr(output, "attach", None)  # a stage that needs the journal (claims)
                if attach is not None:
                    attach(self.config, self.journal, self.broker)
                dl = Deliverer(output, self.journal, self.broker, dest,
                               shared_writer=self.broker.capabilities.in_process, stop=self.stop_event)
                self.outputs += [dl, output]
                queues = self.broker.deliver_queues(dest.id)
                self._thread(f"deliver-{dest.id}",
                             lambda q=queues, h=dl.handle, n=dest.id: self.broker.consume(q, h, self.stop_event,
                                                                                          name=f"deliver.{n}"))

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        ops = await self._start_ops()
        inputs = []
        if "intake" in self.roles:
            intake = Intake(self.journal, self.broker, self.converter, outcomes=self.outcomes)
            await loop.run_in_executor(None, intake.recover)
            executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="intake")
            for ch in self.config.channels:
                if not ch.enabled:
                    continue
                inp = connector("inputs", ch.input_kind)(ch, intake, executor)
                await inp.start()
                inputs.append(inp)
        self.started = True
        _log.info("engine_started", roles=list(self.roles), broker=self.broker.url.split("://")[0],
                  store=self.config.store.url.split(":")[0], channels=len(inputs))
        await stop.wait()
        # Graceful stop: readiness says "stopping" at once (the load balancer turns away), the
        # listeners close and finish the messages they hold, the work in hand is drained, then exit.
        self.draining = True
        _log.info("engine_stopping")
        for inp in inputs:
            await inp.stop()
        self.journal.db.flush_loop()  # the channels' last events (ACKs sent, connections closed)
        await self._drain(self.config.shutdown_grace_s)
        if ops is not None:
            await ops.stop()

    async def _drain(self, grace_s: float) -> None:
        """Let this process's workers finish what they hold, for at most `grace_s`.

        On RabbitMQ a worker stops after its current batch (what it prefetched goes back to the
        queue); the embedded transport holds its queues in memory, so they are emptied first. Left
        over at the deadline is not lost: the journal has it unfinished and the next start sends it.
        """
        if not {"transform", "deliver"} & set(self.roles):
            return
        deadline = time.monotonic() + grace_s
        while (self.broker.backlog() or self.broker.in_flight()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.stop_event.set()
        await asyncio.get_running_loop().run_in_executor(None, self._join, deadline)
        _log.info("engine_drained", left_in_memory=self.broker.backlog(), in_flight=self.broker.in_flight())

    def _join(self, deadline: float) -> None:
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))

    async def _start_ops(self) -> OpsServer | None:
        """/metrics, /health/* and the console, on a thread and event loop of their own (engine.ops): the
        intake's loop, which answers senders, never runs an HTTP request. A process that cannot serve
        them still does its work, and says so."""
        settings = self.config.ops
        if not settings.port:
            return None
        metrics.register_depths(self._depths, self.journal.delivery.lanes_by_destination)
        from engine.console import Console  # only where the endpoint is served

        console = Console(self.config, self.journal, self._depths, self.converter)
        ops = OpsServer(settings.host, settings.port, self._not_ready, console, roles=self.roles)
        try:
            await ops.start()
        except OSError as exc:
            _log.error("ops_not_listening", host=settings.host, port=settings.port, error=exc.__class__.__name__)
            return None
        return ops

    def _depths(self) -> dict[str, int]:
        now = time.monotonic()
        if now - self._depth_cache[0] > 5.0:  # a scrape every few seconds must not hammer RabbitMQ
            self._depth_cache = (now, self.broker.depths())
        return self._depth_cache[1]

    def _not_ready(self) -> str | None:
        if self.stop_event.is_set() or self.draining:
            return "stopping"
        if not self.started:
            return "starting"
        try:
            self.journal.db.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready; the reason is its class
            return f"journal: {exc.__class__.__name__}"
        dead = [t.name for t in self.threads if not t.is_alive()]
        if dead:
            return f"worker threads stopped: {', '.join(dead)}"
        # every role publishes or consumes (cached 5 s)
        if not self.broker.capabilities.in_process and not self._depths():
            return "broker: no RabbitMQ node answers"
        return None

    def run(self) -> None:
        self.start_workers()
        try:
            asyncio.run(self._serve())
        finally:
            self.close()

    def close(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(5)
        for out in self.outputs:
            out.close()
        self.broker.close()
        self.journal.close()
