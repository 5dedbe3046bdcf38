"""Idempotency keys in the journal (engine.store.idempotency) on SQLite and PostgreSQL: one claim per key
however many race for it, the first answer kept, stale claims taken over, expired keys freed."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from engine.ids import message_id
from engine.store import Journal
from engine.store.idempotency import Answer, Claimed, IdempotencyKeys, Mismatch, Pending
from engine.types import Inbound

A, B = "a" * 64, "b" * 64


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def journal(store_url: str, clock: Clock) -> Iterator[Journal]:
    j = Journal(store_url, clock=clock)
    try:
        yield j
    finally:
        j.close()


class TestIdempotencyKeys:
    def test_one_claim_among_racing_threads(self, journal: Journal) -> None:
        """30 threads claim one key at once: exactly one gets it, the others find it pending."""
        keys = IdempotencyKeys(journal.db)
        results: list[object] = []
        barrier = threading.Barrier(30)

        def run() -> None:
            barrier.wait()
            results.append(keys.claim("rest", "his", "k-1", A))

        threads = [threading.Thread(target=run) for _ in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(isinstance(r, Claimed) for r in results) == 1
        assert sum(isinstance(r, Pending) for r in results) == 29

    def test_the_first_answer_then_another_body(self, journal: Journal) -> None:
        """Completed, the key gives its answer back to the same body and Mismatch to another."""
        keys = IdempotencyKeys(journal.db)
        claim = keys.claim("rest", "his", "k-2", A)
        assert isinstance(claim, Claimed) and claim.since is None
        assert keys.claim("rest", "his", "k-2", B) == Mismatch()
        assert keys.complete("rest", "his", "k-2", claim.claim, 202, b'{"id":"m1"}', "m1") is True
        assert keys.claim("rest", "his", "k-2", A) == Answer(202, b'{"id":"m1"}', "m1")
        assert keys.state("rest", "his", "k-2", A) == Answer(202, b'{"id":"m1"}', "m1")
        assert keys.state("rest", "his", "k-2", B) == Mismatch()
        assert isinstance(keys.claim("rest", "dashboard", "k-2", B), Claimed)  # another client, another key
        assert isinstance(keys.claim("other", "his", "k-2", B), Claimed)  # another channel too

    def test_keys_survive_a_restart(self, store_url: str, clock: Clock) -> None:
        """A key answered before the journal was closed is answered the same after it is opened again."""
        j = Journal(store_url, clock=clock)
        claim = IdempotencyKeys(j.db).claim("rest", "his", "k-3", A)
        assert isinstance(claim, Claimed)
        IdempotencyKeys(j.db).complete("rest", "his", "k-3", claim.claim, 202, b"first", "m3")
        j.close()
        j2 = Journal(store_url, clock=clock)
        try:
            assert IdempotencyKeys(j2.db).claim("rest", "his", "k-3", A) == Answer(202, b"first", "m3")
        finally:
            j2.close()

    def test_a_stale_claim_is_taken_over_once(self, journal: Journal, clock: Clock) -> None:
        """A claim never completed (its request died) holds the key for its lease, then one request takes it
        over, told since when; the dead request's late completion is refused."""
        keys = IdempotencyKeys(journal.db, lease_s=60)
        dead = keys.claim("rest", "his", "k-4", A)
        assert isinstance(dead, Claimed)
        started = clock.now
        clock.now += timedelta(seconds=30)
        assert keys.claim("rest", "his", "k-4", A) == Pending()
        assert keys.state("rest", "his", "k-4", A) == Pending()
        clock.now += timedelta(seconds=31)
        assert keys.state("rest", "his", "k-4", A) is None  # stale: the waiting request claims it
        taken = keys.claim("rest", "his", "k-4", A)
        assert isinstance(taken, Claimed) and taken.since == started
        assert keys.claim("rest", "his", "k-4", A) == Pending()  # taken over once only
        assert keys.complete("rest", "his", "k-4", dead.claim, 202, b"late", "m-late") is False
        assert keys.complete("rest", "his", "k-4", taken.claim, 202, b"mine", "m4") is True
        assert keys.claim("rest", "his", "k-4", A) == Answer(202, b"mine", "m4")

    def test_a_stale_claim_with_another_body_is_still_a_mismatch(self, journal: Journal, clock: Clock) -> None:
        """Taking over is for a retry of the same request: another body is refused even when the claim is stale."""
        keys = IdempotencyKeys(journal.db, lease_s=60)
        assert isinstance(keys.claim("rest", "his", "k-5", A), Claimed)
        clock.now += timedelta(minutes=5)
        assert keys.claim("rest", "his", "k-5", B) == Mismatch()

    def test_released_and_expired_keys_are_free(self, journal: Journal, clock: Clock) -> None:
        """A released claim frees the key at once; an answered key is free again after its ttl, and pruned."""
        keys = IdempotencyKeys(journal.db, ttl_s=3600, prune_every_s=0)
        claim = keys.claim("rest", "his", "k-6", A)
        assert isinstance(claim, Claimed)
        keys.release("rest", "his", "k-6", claim.claim)
        assert keys.state("rest", "his", "k-6", A) is None
        again = keys.claim("rest", "his", "k-6", A)
        assert isinstance(again, Claimed)
        keys.complete("rest", "his", "k-6", again.claim, 202, b"x", "m6")
        clock.now += timedelta(hours=2)
        assert keys.state("rest", "his", "k-6", B) is None
        fresh = keys.claim("rest", "his", "k-6", B)  # another body is fine once the key expired
        assert isinstance(fresh, Claimed) and fresh.since is None
        assert isinstance(keys.claim("rest", "his", "k-7", A), Claimed)
        clock.now += timedelta(hours=2)
        keys.claim("rest", "his", "k-8", A)  # prunes what expired
        assert journal.db.query("SELECT COUNT(*) FROM idempotency")[0][0] == 1

    def test_the_key_itself_is_not_stored(self, journal: Journal) -> None:
        """The table holds the key's SHA-256, never the header a sender wrote."""
        IdempotencyKeys(journal.db).claim("rest", "his", "IPP-10006579-admission", A)
        (stored,) = journal.db.query("SELECT key_sha256 FROM idempotency")[0]
        assert stored == hashlib.sha256(b"IPP-10006579-admission").hexdigest()

    def test_journaled_since_finds_what_a_dead_request_left(self, journal: Journal, clock: Clock) -> None:
        """The same bytes journaled on the channel since the claim are found; other bytes or channels are not."""
        keys = IdempotencyKeys(journal.db)
        raw = b"MSH|^~\\&|APP|FAC|||20261207||ADT^A01|K-9|P|2.5\r"
        msg = Inbound(message_id(), "rest", clock.now, raw, "ADT^A01", "K-9", "FAC")
        journal.messages.receive(msg)
        sha = hashlib.sha256(raw).hexdigest()
        assert keys.journaled_since("rest", sha, clock.now - timedelta(seconds=1)) == msg.id
        assert keys.journaled_since("other", sha, clock.now - timedelta(seconds=1)) is None
        assert keys.journaled_since("rest", A, clock.now - timedelta(seconds=1)) is None
        assert keys.journaled_since("rest", sha, clock.now + timedelta(minutes=1)) is None
