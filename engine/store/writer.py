"""Group commit: one writer thread, many waiting callers, one transaction for all of them.

A caller submits a unit of work and waits for the commit that holds it. While one commit
is on disk the next callers queue up, so under load a single fsync covers many messages
(ARCHITECTURE §4) and under no load a message waits for nothing but its own commit.

Work nobody waits for (ACK-sent and connection events) is *lazy*: it rides along with the
next commit someone does wait for, or is committed on its own after `lazy_ms`. An fsync of
its own per event would otherwise sit in front of the next message's commit.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import structlog

from engine.errors import StoreError

__all__ = ["GroupCommitWriter", "Work"]

Work = Callable[[Any], Any]  # receives a DB-API cursor, returns a result for its caller
_log = structlog.get_logger("wasla.store")
_STOP = object()


class GroupCommitWriter:
    def __init__(self, connect: Callable[[], Any], *, max_wait_ms: float = 0.0, max_batch: int = 500,
                 lazy_ms: float = 50.0) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._max_wait = max_wait_ms / 1000.0
        self._lazy_wait = lazy_ms / 1000.0
        self._max_batch = max_batch
        self._conn = connect()
        self._thread = threading.Thread(target=self._run, name="wasla-journal-writer", daemon=True)
        self._thread.start()
        self._closed = False

    def submit(self, work: Work, *, lazy: bool = False) -> Future[Any]:
        """Queue `work`; the future resolves once the commit holding it is durable."""
        if self._closed:
            raise StoreError("journal is closed")
        fut: Future[Any] = Future()
        self._queue.put((work, fut, lazy))
        return fut

    def run(self, work: Work, timeout: float = 60.0) -> Any:
        """Submit and wait for the commit that holds `work`."""
        return self.submit(work).result(timeout)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join(10)
            with contextlib.suppress(Exception):  # best effort: already broken or absent
                self._conn.close()

    def _gather(self, first: Any) -> tuple[list[tuple[Work, Future[Any], bool]], bool]:
        batch = [first]
        stop = False
        urgent = not first[2]
        start = time.monotonic()
        deadline = start + (self._max_wait if urgent else self._lazy_wait)
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is _STOP:
                stop = True
                break
            batch.append(item)
            if not urgent and not item[2]:  # someone waits now: commit soon, not after lazy_ms
                urgent = True
                deadline = min(deadline, time.monotonic() + self._max_wait)
        return batch, stop

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = self._gather(first)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[tuple[Work, Future[Any], bool]]) -> None:
        try:
            cur = self._conn.cursor()
            results = [work(cur) for work, _, _ in batch]
            self._conn.commit()
        except Exception as exc:  # noqa: BLE001 - retried one by one so one bad write fails alone
            self._rollback()
            if len(batch) == 1:
                _log.error("journal_write_failed", error=exc.__class__.__name__)
                _settle(batch[0][1], error=StoreError(f"journal write failed: {exc.__class__.__name__}: {exc}"))
                return
            for item in batch:
                self._commit([item])
            return
        for (_, fut, _), result in zip(batch, results, strict=True):
            _settle(fut, result)

    def _rollback(self) -> None:
        try:
            self._conn.rollback()
        except Exception:  # noqa: BLE001 - a dead connection is replaced below
            with contextlib.suppress(Exception):  # best effort: already broken or absent
                self._conn.close()
            self._conn = self._connect()


def _settle(fut: Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    """Resolve a caller's future; one the caller cancelled (it stopped waiting) must not kill the writer."""
    if not fut.set_running_or_notify_cancel():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)
