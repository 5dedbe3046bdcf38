"""Idempotency-Key over real HTTP to the engine, on SQLite and PostgreSQL: 30 concurrent POSTs with one key
make one message and one answer, and the key outlives a restart of the engine.

The body is a FHIR Patient without id or Bundle.identifier: nothing but the key keeps two of them from
being two messages (an HL7 v2 body would also be caught by the MSH-4/MSH-10 duplicate check)."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson

from engine.ids import message_id
from engine.store import Journal
from engine.store.idempotency import Claimed, IdempotencyKeys
from engine.types import Inbound
from tests.support import engine, free_port, make_project, wait_port

TOKEN = "tok-idem-0123456789"
CONCURRENT, TRIALS = 30, 10


def _project(tmp: Path) -> tuple[Path, int]:
    project = make_project(tmp)
    port = free_port()
    (project / "config/channels/fhir-rest.yaml").write_text(
        f"input:\n  rest:\n    port: {port}\n    rate_limit_per_minute: 100000\n    tokens:\n"
        f"      - {{name: his, sha256: {hashlib.sha256(TOKEN.encode()).hexdigest()}}}\n"
        "pipeline:\n  mapping: adt\noutput:\n  - archive-ndjson\n", encoding="utf-8")
    return project, port


def _patient(n: int) -> bytes:
    return orjson.dumps({"resourceType": "Patient", "gender": "female", "birthDate": f"{1900 + n}-01-01"})


def _post(port: int, body: bytes, key: str) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{port}/messages", content=body, timeout=60,
                      headers={"Content-Type": "application/fhir+json", "Authorization": f"Bearer {TOKEN}",
                               "Idempotency-Key": key})


def _messages(store_url: str, body: bytes) -> list[str]:
    j = Journal(store_url)
    try:
        rows = j.db.query("SELECT id FROM messages WHERE sha256 = ?", (hashlib.sha256(body).hexdigest(),))
        return [str(r[0]) for r in rows]
    finally:
        j.close()


def test_one_key_one_message_one_answer_and_a_restart_keeps_it(store_url: str, tmp_path: Path) -> None:
    """30 POSTs at once with one key, 10 times: each time one message, and every answer the first answer
    (same status and body) or 409 in progress; after a restart the key still gives the first answer."""
    project, port = _project(tmp_path)
    env = {"WASLA_STORE_URL": store_url}
    firsts: dict[int, tuple[int, bytes]] = {}
    with engine(project, env) as proc:
        wait_port(port, proc=proc)
        for trial in range(TRIALS):
            body, key = _patient(trial), f"key-{trial}"
            barrier = threading.Barrier(CONCURRENT)

            def send(_: int, body: bytes = body, key: str = key,
                     barrier: threading.Barrier = barrier) -> httpx.Response:
                barrier.wait()
                return _post(port, body, key)

            with ThreadPoolExecutor(CONCURRENT) as pool:
                answers = list(pool.map(send, range(CONCURRENT)))
            assert not [a.text for a in answers if a.status_code not in (202, 409)]
            final = {(a.status_code, a.content) for a in answers if a.status_code != 409}
            assert len(final) == 1, final
            busy = [a for a in answers if a.status_code == 409]
            assert all(a.json()["type"].endswith("/idempotency-key-in-progress") for a in busy)
            assert all(a.headers["retry-after"] == "1" for a in busy)
            (firsts[trial],) = final
            assert _messages(store_url, body) == [orjson.loads(firsts[trial][1])["id"]]
    with engine(project, env, name="engine-2") as proc:
        wait_port(port, proc=proc)
        for trial in (0, TRIALS - 1):
            again = _post(port, _patient(trial), f"key-{trial}")
            assert (again.status_code, again.content) == firsts[trial]
            assert again.headers["idempotent-replayed"] == "true"
            assert again.headers["location"] == f"/messages/{orjson.loads(again.content)['id']}"
        other = _post(port, _patient(99), "key-0")
        assert other.status_code == 422 and other.json()["type"].endswith("/idempotency-key-reused")
        assert len(_messages(store_url, _patient(0))) == 1


def test_a_claim_left_by_a_dead_request_is_taken_over(store_url: str, tmp_path: Path) -> None:
    """A key claimed by a request that died (no answer recorded) is taken over after its lease: when the dead
    request's message reached the journal the retry is answered with it, else the message is received now."""
    project, port = _project(tmp_path)
    died_after, died_before = _patient(50), _patient(51)
    past = datetime.now(UTC) - timedelta(minutes=5)
    j = Journal(store_url, clock=lambda: past)
    try:
        keys = IdempotencyKeys(j)
        for body, key in ((died_after, "dead-after"), (died_before, "dead-before")):
            assert isinstance(keys.claim("fhir-rest", "his", key, hashlib.sha256(body).hexdigest()), Claimed)
        left = Inbound(message_id(), "fhir-rest", past + timedelta(seconds=1), died_after, "FHIR^Patient", "", "his")
        j.messages.receive(left)
    finally:
        j.close()
    with engine(project, {"WASLA_STORE_URL": store_url}) as proc:
        wait_port(port, proc=proc)
        after = _post(port, died_after, "dead-after")
        assert after.status_code == 202 and after.json()["id"] == left.id, after.text
        assert _messages(store_url, died_after) == [left.id]
        before = _post(port, died_before, "dead-before")
        assert before.status_code == 202, before.text
        assert _messages(store_url, died_before) == [before.json()["id"]]
        assert _post(port, died_before, "dead-before").content == before.content
