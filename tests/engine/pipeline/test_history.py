"""An A08 that says nothing of the visit's state keeps the status the engine wrote before (issue 22).

The IG's PV1[Encounter] takes Encounter.status from PV1-2 (PatientClass[EncounterStatus]) and, for an
A08 whose PV1-2 is empty or U, R4's required status can only be `unknown`; a PUT replaces the whole
Encounter, so an admitted patient's visit would go back to unknown. The transform keeps what the
journal says it last wrote (mapping `keep_earlier`). Run through the real transform on both
transports (embedded broker + SQLite, RabbitMQ + PostgreSQL), where journal writes are lazy or not.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.config import load_config
from engine.ids import message_id
from engine.pipeline.transform import Transformer
from engine.runtime import Engine
from engine.transport import Delivery
from engine.types import Inbound
from tests.delivery_support import adt_msg, delivery_project
from tests.support import BrokerMessage

_T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def _no_state(raw: bytes) -> bytes:
    """The same ADT with PV1-2 (patient class) empty: the message states nothing of the visit's state."""
    return raw.replace(b"PV1|1|I|", b"PV1|1||")


@pytest.fixture(params=["embedded", "rabbitmq"])
def transform(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "embedded":
        project, _, _ = delivery_project(tmp_path, "http://127.0.0.1:9/fhir", ndjson=True, fhir=False)
    else:
        project, _, _ = delivery_project(tmp_path, "http://127.0.0.1:9/fhir", ndjson=True, fhir=False,
                                         broker=request.getfixturevalue("rabbitmq_url"),
                                         store=request.getfixturevalue("postgres_url"))
    engine = Engine(load_config(project / "config"), roles=("transform",))
    engine.broker.purge()
    tr = Transformer(engine.config, engine.journal, engine.broker, engine.converter)
    clock = iter(range(1000))

    def send(*messages: tuple[bytes, str]) -> list[str]:
        """One batch of (raw, patient_key), journaled then transformed; their message ids."""
        batch, ids = [], []
        for raw, patient in messages:
            mid, at = message_id(), _T0 + timedelta(seconds=next(clock))
            trigger = raw.split(b"|")[8].decode()
            engine.journal.messages.receive(Inbound(mid, "adt-mllp", at, raw, trigger, raw.split(b"|")[9].decode(),
                                           "CHU-IBN-SINA", patient))
            batch.append(Delivery(raw, {"message_id": mid, "channel": "adt-mllp", "received_at": at.isoformat(),
                                        "message_type": trigger, "patient_key": patient}, BrokerMessage()))
            ids.append(mid)
        tr.handle(batch)
        return ids

    def encounter(mid: str) -> tuple[str, list[str]]:
        deadline = time.monotonic() + 10   # on the embedded broker the journal write is lazy
        while (out := engine.journal.outputs.get(mid, "archive-ndjson")) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert out is not None, "no FHIR journaled"
        (enc,) = [e["resource"] for e in orjson.loads(out.body)["entry"]
                  if e["resource"]["resourceType"] == "Encounter"]
        events = engine.journal.messages.events(mid)
        warned = [w["code"] for ev in events for w in (ev.get("detail") or {}).get("warnings", [])
                  if w.get("rule") == "encounter" and w.get("field") == "status"]
        return enc["status"], warned

    yield send, encounter
    engine.broker.close()
    engine.journal.close()


def test_an_a08_without_visit_state_keeps_the_admission_status(transform: Any) -> None:
    send, encounter = transform
    (a01,) = send((adt_msg(1, "A01", "C1", "ADMIT"), "p1"))
    (a08,) = send((_no_state(adt_msg(1, "A08", "C2", "MID")), "p1"))
    assert encounter(a01) == ("in-progress", [])
    assert encounter(a08) == ("in-progress", ["KEPT_FROM_EARLIER"])


def test_in_one_batch_too_and_after_a_discharge_it_stays_finished(transform: Any) -> None:
    send, encounter = transform
    a01, a08 = send((adt_msg(2, "A01", "C1", "ADMIT"), "p2"), (_no_state(adt_msg(2, "A08", "C2", "MID")), "p2"))
    assert encounter(a08) == ("in-progress", ["KEPT_FROM_EARLIER"])
    (a03,) = send((adt_msg(2, "A03", "C3", "OUT"), "p2"))
    (later,) = send((_no_state(adt_msg(2, "A08", "C4", "LATE")), "p2"))
    assert encounter(a03)[0] == "finished"
    assert encounter(later) == ("finished", ["KEPT_FROM_EARLIER"])


def test_with_nothing_earlier_it_is_unknown_and_says_so(transform: Any) -> None:
    send, encounter = transform
    send((adt_msg(3, "A01", "C1", "OTHER"), "p3"))         # another patient's visit is never taken
    (a08,) = send((_no_state(adt_msg(4, "A08", "C2", "NEW")), "p4"))
    assert encounter(a08) == ("unknown", ["NOT_STATED"])


def test_an_a08_that_states_the_class_is_not_overridden(transform: Any) -> None:
    send, encounter = transform
    send((adt_msg(5, "A03", "C1", "OUT"), "p5"))
    (a08,) = send((adt_msg(5, "A08", "C2", "BACK"), "p5"))  # PV1-2 I: in-progress, as the message says
    assert encounter(a08) == ("in-progress", [])
