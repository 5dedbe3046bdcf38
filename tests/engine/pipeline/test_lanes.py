"""Patient lanes keep a destination's messages in order: one that cannot go holds the ones behind it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.errors import DeliveryError, PermanentDeliveryError, StoreError, TransientDeliveryError
from engine.ids import message_id
from engine.pipeline.lanes import Heads, Item, Lanes, Paused
from engine.store import Journal
from engine.transport import Delivery
from engine.types import Inbound
from tests.support import BrokerMessage

DEST = "out"


def _item(mid: str, patient: str = "p1", queued: bool = False) -> Item:
    delivery = Delivery(mid.encode(), {"message_id": mid}, BrokerMessage()) if queued else None
    return Item(mid, mid.encode(), {"message_id": mid, "patient_key": patient}, delivery)


class _Work:
    """A deliverer that records what the lanes ask of it; `fail` scripts an answer per message id. A dead
    letter is journaled as the deliverer does (else a drain would find it waiting again)."""

    def __init__(self, fail: dict[str, Exception] | None = None, journal: Journal | None = None,
                 block: bool = True) -> None:
        self.fail = fail or {}
        self.journal = journal
        self.block = block
        self.delivered: list[list[str]] = []
        self.sent: list[str] = []
        self.retried: list[str] = []
        self.dead_letters: list[str] = []
        self.acked: list[str] = []
        self.lock = threading.Lock()

    def deliver(self, items: list[Item], heads: Heads) -> None:
        for item in items:
            if item.mid in self.fail:
                raise self.fail[item.mid]
        with self.lock:
            self.delivered.append([i.mid for i in items])

    def send(self, item: Item) -> str:
        self.sent.append(item.mid)
        assert len(self.sent) < 100, "a drain that never ends"
        if item.mid in self.fail:
            raise self.fail[item.mid]
        return f"{DEST}/{item.mid}"

    def retry(self, items: list[Item], exc: DeliveryError, heads: Heads) -> None:
        self.retried += [i.mid for i in items]

    def dead(self, item: Item, exc: DeliveryError, heads: Heads) -> None:
        self.dead_letters.append(item.mid)
        if self.journal is not None:
            self.journal.delivery.dead(DEST, item.mid, item.patient, str(exc), exc.response, hold_lane=self.block)
        heads.dead(item, block=self.block)

    def ack(self, item: Item) -> None:
        with self.lock:
            self.acked.append(item.mid)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(f"sqlite:///{tmp_path}/j.db")
    try:
        yield j
    finally:
        j.close()


def _journaled(journal: Journal, patient: str = "p1") -> str:
    """A message converted for the destination, not yet delivered."""
    mid = message_id()
    journal.messages.receive(Inbound(mid, "adt", datetime.now(UTC), b"raw", patient_key=patient))
    journal.outputs.transformed(mid, {DEST: mid.encode()})
    return mid


def _stopped() -> threading.Event:
    """A set stop event: a journal fault's pause returns at once."""
    event = threading.Event()
    event.set()
    return event


class TestHeads:
    def test_a_message_behind_a_held_lane_waits_its_head_goes(self) -> None:
        """Another message of the patient waits behind the head; the head itself, and other patients, go."""
        heads = Heads({"p1": "m1"})
        assert heads.behind(_item("m2")) == "m1"
        assert heads.behind(_item("m1")) is None
        assert heads.behind(_item("m3", patient="p2")) is None
        assert heads.free(_item("m1")) and heads.free(_item("m3", patient="p2"))
        assert not heads.free(_item("m2"))
        assert heads.leads(_item("m1")) and not heads.leads(_item("m2"))

    def test_take_and_open(self) -> None:
        """A message taking a retry round heads its lane; opening the lane lets the patient's others go."""
        heads = Heads({})
        heads.take(_item("m1"))
        assert heads.behind(_item("m2")) == "m1"
        heads.open("p1")
        assert heads.behind(_item("m2")) is None

    def test_a_message_without_a_patient_has_no_lane(self) -> None:
        """Without a patient key nothing heads a lane, and nothing waits."""
        heads = Heads({})
        heads.take(_item("m1", patient=""))
        heads.dead(_item("m1", patient=""), block=True)
        assert heads.behind(_item("m2", patient="")) is None
        assert not heads.leads(_item("m1", patient=""))

    def test_a_dead_letter_holds_its_lane_only_under_block(self) -> None:
        """Under `block` a dead letter heads its lane; else the lane it headed opens (another's stays held)."""
        blocked = Heads({})
        blocked.dead(_item("m1"), block=True)
        assert blocked.behind(_item("m2")) == "m1"
        opened = Heads({"p1": "m1"})
        opened.dead(_item("m1"), block=False)
        assert opened.behind(_item("m2")) is None
        other = Heads({"p1": "m0"})
        other.dead(_item("m1"), block=False)
        assert other.behind(_item("m2")) == "m0"


class TestRun:
    def test_in_turn_what_is_behind_a_held_lane_waits_in_the_journal(self, journal: Journal) -> None:
        """One at a time: the patient's messages behind the head wait (journaled, acknowledged); others go."""
        head, behind, other = _journaled(journal), _journaled(journal), _journaled(journal, "p2")
        work = _Work()
        lanes = Lanes(DEST, journal, work)
        heads = Heads({"p1": head})
        items = [_item(behind, queued=True), _item(other, "p2", queued=True)]
        assert lanes.run(items, heads) == []
        assert work.delivered == [[other]]
        assert work.acked == [behind]
        row = journal.outputs.get(behind, DEST)
        assert row is not None and row.status == "waiting"
        lanes.close()

    @pytest.mark.parametrize("fault", [Paused(), StoreError("journal down")])
    def test_an_interruption_leaves_it_and_everything_after_it(self, journal: Journal, fault: Exception) -> None:
        """The circuit opening or the journal failing on the second message leaves the second and third."""
        work = _Work({"m2": fault})
        lanes = Lanes(DEST, journal, work, stop=_stopped())
        items = [_item("m1"), _item("m2"), _item("m3")]
        assert [i.mid for i in lanes.run(items, Heads({}))] == ["m2", "m3"]
        assert work.delivered == [["m1"]]
        lanes.close()

    def test_in_parallel_each_patient_in_order_and_an_interruption_stops_only_its_lane(self,
                                                                                       journal: Journal) -> None:
        """With concurrency, patients run side by side: p1's pause leaves p1's rest, p2 is delivered whole."""
        work = _Work({"a2": Paused()})
        lanes = Lanes(DEST, journal, work, concurrency=4)
        items = [_item("a1", "p1"), _item("b1", "p2"), _item("a2", "p1"), _item("b2", "p2"), _item("a3", "p1")]
        assert [i.mid for i in lanes.run(items, Heads({}))] == ["a2", "a3"]
        assert sorted(work.delivered) == [["a1"], ["b1"], ["b2"]]
        assert work.delivered.index(["b1"]) < work.delivered.index(["b2"])
        lanes.close()

    def test_together_those_behind_wait_the_others_go_in_one_write(self, journal: Journal) -> None:
        """An output that takes batches gets, in one call, everything not behind a held lane."""
        head, behind = _journaled(journal), _journaled(journal)
        work = _Work()
        lanes = Lanes(DEST, journal, work, together=True)
        items = [_item("x1", "p2"), _item(behind, queued=True), _item("x2", "p3")]
        assert lanes.run(items, Heads({"p1": head})) == []
        assert work.delivered == [["x1", "x2"]]
        assert work.acked == [behind]
        lanes.close()

    def test_together_a_pause_leaves_the_write_and_a_journal_fault_everything(self, journal: Journal) -> None:
        """The circuit opening leaves the messages of the write; a journal fault leaves the whole run."""
        paused = Lanes(DEST, journal, _Work({"x2": Paused()}), together=True)
        items = [_item("x1", "p2"), _item("x2", "p3")]
        assert paused.run(items, Heads({})) == items
        faulty = Lanes(DEST, journal, _Work({"x2": StoreError("down")}), together=True, stop=_stopped())
        assert faulty.run(items, Heads({})) == items
        paused.close()
        faulty.close()


class TestDrain:
    @staticmethod
    def _lane(journal: Journal, n: int) -> tuple[str, list[str]]:
        """A head taking a retry round and `n` messages of the same patient waiting behind it."""
        head = _journaled(journal)
        journal.delivery.retrying(DEST, [(head, "p1", 0, 5.0, "503")])
        waiting = [_journaled(journal) for _ in range(n)]
        journal.delivery.wait_behind(DEST, [(mid, head) for mid in waiting])
        return head, waiting

    def test_the_waiting_follow_the_head_oldest_first_then_the_lane_opens(self, journal: Journal) -> None:
        """The head delivered, its waiting messages are sent in order, journaled delivered; the lane opens."""
        head, waiting = self._lane(journal, 3)
        work = _Work()
        heads = Heads({"p1": head})
        Lanes(DEST, journal, work).drain(_item(head), heads)
        assert work.sent == waiting
        rows = [journal.outputs.get(mid, DEST) for mid in waiting]
        assert [r.status if r else None for r in rows] == ["delivered"] * 3
        assert journal.delivery.lanes(DEST, ["p1"]) == {}
        assert heads.behind(_item("later")) is None

    def test_a_transient_failure_heads_the_lane_in_its_place(self, journal: Journal) -> None:
        """The second waiting message fails: it takes the retry, heads the lane; the third still waits."""
        head, waiting = self._lane(journal, 3)
        work = _Work({waiting[1]: TransientDeliveryError("503")})
        heads = Heads({"p1": head})
        Lanes(DEST, journal, work).drain(_item(head), heads)
        assert work.sent == waiting[:2]
        assert work.retried == [waiting[1]]
        assert journal.delivery.lanes(DEST, ["p1"]) == {"p1": waiting[1]}
        assert heads.behind(_item(waiting[2])) == waiting[1]
        row = journal.outputs.get(waiting[2], DEST)
        assert row is not None and row.status == "waiting"

    @pytest.mark.parametrize("block", [True, False])
    def test_a_refused_message_stops_the_drain_only_under_block(self, journal: Journal, block: bool) -> None:
        """A permanent refusal is a dead letter; under `block` the rest keep waiting, else they follow."""
        head, waiting = self._lane(journal, 3)
        work = _Work({waiting[0]: PermanentDeliveryError("422")}, journal, block)
        Lanes(DEST, journal, work, block=block).drain(_item(head), Heads({"p1": head}))
        assert work.dead_letters == [waiting[0]]
        assert work.sent == (waiting[:1] if block else waiting)
        assert journal.delivery.lanes(DEST, ["p1"]) == ({"p1": waiting[0]} if block else {})
