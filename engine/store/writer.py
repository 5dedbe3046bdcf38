"""Group commit: one writer thread, many waiting callers, one transaction for all of them.

A caller submits a unit of work and waits for the commit that holds it. While one commit
is on disk the next callers queue up, so under load a single fsync covers many messages
(ARCHITECTURE §4) and under no load a message waits for nothing but its own commit.

Work nobody waits for (ACK-sent and connection events) is *lazy*: it rides along with the
next commit someone does wait for, or is committed on its own after `lazy_ms`. An fsync of
its own per event would otherwise sit in front of the next message's commit.

An event loop that waits for commits (intake: the sender's ACK waits for the journal) commits
on its own thread instead, through a `LoopCommitter`: everything its callbacks submitted in
one loop iteration goes into one transaction, run inline. Handing the work to the writer
thread and the result back (two thread wake-ups, two GIL hand-offs) cost more than the
commit's own CPU; the fsync releases the GIL, so the other stages keep working meanwhile.
Both paths take the same lock around a transaction, so SQLite's busy handler (which sleeps
in milliseconds) never runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import structlog

from engine.errors import StoreError

__all__ = ["GroupCommitWriter", "LoopCommitter", "Work"]

Work = Callable[[Any], Any]  # receives a DB-API cursor, returns a result for its caller
_log = structlog.get_logger("wasla.store")
_STOP = object()


def _write_error(exc: Exception, *, alive: bool) -> StoreError:
    """The error a caller hears: the class and SQLSTATE, never the database's message (it can quote
    the values written), and whether trying again can help. The database refused this write while
    the connection lived on, for a reason other than a lock or a shutdown: the write is at fault."""
    code = getattr(exc, "sqlstate", None)
    text = f"journal write failed: {exc.__class__.__name__}" + (f" (SQLSTATE {code})" if code else "")
    return StoreError(text, transient=not alive or isinstance(exc, _operational()))


@functools.cache
def _operational() -> tuple[type[BaseException], ...]:
    """Errors of the database's state (locks, shutdown, lost connection), not of the data written."""
    import psycopg

    return (sqlite3.OperationalError, psycopg.OperationalError, psycopg.InterfaceError)


class GroupCommitWriter:
    """Owns the journal's write connection and its writer thread: work submitted from any thread is
    committed in batches (at most `max_batch`), each caller's future resolving once its commit is
    durable. Lazy work waits up to `lazy_ms` for a commit to ride. `transact` runs on the caller's
    thread under the same lock, so two transactions never overlap.
    """

    def __init__(self, connect: Callable[[], Any], *, max_wait_ms: float = 0.0, max_batch: int = 500,
                 lazy_ms: float = 50.0) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._max_wait = max_wait_ms / 1000.0
        self._lazy_wait = lazy_ms / 1000.0
        self._max_batch = max_batch
        self._conn: Any = connect()
        self._lock = threading.Lock()
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
            self._queue.put(_STOP)
            self._thread.join(10)
            self._closed = True
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

    def transact(self, works: list[Work]) -> list[tuple[bool, Any]]:
        """Run `works` in one transaction on the caller's thread: (True, result) or (False, error) each.

        If the transaction fails, each work is retried alone, so one bad write fails alone.
        """
        with self._lock:
            if self._closed:
                raise StoreError("journal is closed")
            return self._transact(works)

    def _transact(self, works: list[Work]) -> list[tuple[bool, Any]]:
        if self._conn is None:  # lost, and the last reconnect failed: try again now, once for the batch
            try:
                self._conn = self._connect()
            except Exception as exc:  # noqa: BLE001 - every caller hears it; the next batch tries again
                _log.error("journal_unavailable", error=exc.__class__.__name__)
                return [(False, StoreError(f"journal unavailable: {exc.__class__.__name__}")) for _ in works]
        try:
            cur = self._conn.cursor()
            results = [work(cur) for work in works]
            self._conn.commit()
        except Exception as exc:  # noqa: BLE001 - retried one by one so one bad write fails alone
            self._rollback()
            if len(works) == 1 or self._conn is None:  # no connection: one by one would fail the same
                _log.error("journal_write_failed", error=exc.__class__.__name__)
                return [(False, _write_error(exc, alive=self._conn is not None)) for _ in works]
            return [self._transact([w])[0] for w in works]
        return [(True, r) for r in results]

    def _commit(self, batch: list[tuple[Work, Future[Any], bool]]) -> None:
        for (_, fut, _), (ok, value) in zip(batch, self.transact([w for w, _, _ in batch]), strict=True):
            if ok:
                _settle(fut, value)
            else:
                _settle(fut, error=value)

    def _rollback(self) -> None:
        """Roll back; a dead connection is dropped and replaced at the next batch. Reconnecting here
        could fail too (PostgreSQL still shutting down) and must not kill the writer thread, or
        every later write would hang."""
        if self._conn is None:
            return
        try:
            self._conn.rollback()
        except Exception:  # noqa: BLE001 - a dead connection
            with contextlib.suppress(Exception):  # best effort: already broken or absent
                self._conn.close()
            self._conn = None


class LoopCommitter:
    """Group commit for callers on one event loop, run on the loop's own thread (see the module doc).

    `submit` returns an asyncio future; the first submit of a loop iteration schedules one
    flush for the next, which commits everything submitted until then in one transaction.
    Lazy work waits for the next flush, or `lazy_ms` at most.
    """

    def __init__(self, writer: GroupCommitWriter, loop: asyncio.AbstractEventLoop, *, lazy_ms: float = 50.0) -> None:
        self._writer = writer
        self._loop = loop
        self._lazy_s = lazy_ms / 1000.0
        self._pending: list[tuple[Work, asyncio.Future[Any] | None]] = []
        self._flush_soon = False
        self._flush_later: asyncio.TimerHandle | None = None

    def submit(self, work: Work) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._pending.append((work, fut))
        if not self._flush_soon:
            self._flush_soon = True
            self._loop.call_soon(self._flush)
        return fut

    def lazy(self, work: Work) -> None:
        self._pending.append((work, None))
        if not self._flush_soon and self._flush_later is None:
            self._flush_later = self._loop.call_later(self._lazy_s, self._flush)

    def flush(self) -> None:
        """Commit what is pending now."""
        self._flush()

    def _flush(self) -> None:
        self._flush_soon = False
        if self._flush_later is not None:
            self._flush_later.cancel()
            self._flush_later = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            outcomes = self._writer.transact([w for w, _ in batch])
        except Exception as exc:  # noqa: BLE001 - the lock or the reconnect failed: every caller hears it
            outcomes = [(False, StoreError(f"journal write failed: {exc.__class__.__name__}"))] * len(batch)
        for (_, fut), (ok, value) in zip(batch, outcomes, strict=True):
            if fut is None or fut.done():
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)


def _settle(fut: Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    """Resolve a caller's future; one the caller cancelled (it stopped waiting) must not kill the writer."""
    if not fut.set_running_or_notify_cancel():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)
