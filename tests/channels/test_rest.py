"""The REST channel over a real socket (the engine, uvicorn inside it): every answer, and nothing lost."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from engine.types import Status
from tests.support import ROOT, engine, free_port, make_project, out_lines, wait_lines, wait_port

SUBMIT, READER, SLOW = "tok-submit-0123456789", "tok-read-0123456789", "tok-slow-0123456789"
ADT = (ROOT / "mappings/adt/fixtures/ma-chu-admission.hl7").read_bytes()
HL7 = {"Content-Type": "application/hl7-v2"}


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Path]]:
    project = make_project(tmp_path_factory.mktemp("rest"))
    port = free_port()
    (project / "config/channels/adt-rest.yaml").write_text(
        "description: ADT over HTTP\n"
        f"input:\n  rest:\n    port: {port}\n    max_body_bytes: 4096\n    tokens:\n"
        f"      - {{name: his, sha256: {_sha(SUBMIT)}}}\n"
        f"      - {{name: dashboard, sha256: {_sha(READER)}, scopes: [read]}}\n"
        f"      - {{name: slow, sha256: {_sha(SLOW)}, rate_limit_per_minute: 2}}\n"
        "    csv_map: csv_lab\n    sender: LABO-AL-AMAL\n"
        "pipeline:\n  mapping: adt\noutput:\n  - archive-ndjson\n", encoding="utf-8")
    with engine(project) as proc:
        wait_port(port, proc=proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:
            yield client, project


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _status(client: httpx.Client, mid: str, want: str, timeout: float = 20) -> str:
    deadline, status = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        status = client.get(f"/messages/{mid}", headers=_auth(READER)).json()["status"]
        if status == want:
            break
        time.sleep(0.1)
    return status


def test_accepted_durable_then_delivered(api: tuple[httpx.Client, Path]) -> None:
    client, project = api
    r = client.post("/messages", content=ADT.replace(b"MSG00001", b"REST-1"), headers={**HL7, **_auth(SUBMIT)})
    assert r.status_code == 202, r.text
    body = r.json()
    assert r.headers["location"] == body["status_url"] == f"/messages/{body['id']}"
    assert _status(client, body["id"], Status.DELIVERED) == Status.DELIVERED
    bundles = [orjson.loads(line) for line in wait_lines(project, 1)]
    assert "REST-1" in [b["identifier"]["value"] for b in bundles]


def test_crlf_and_text_plain_are_accepted(api: tuple[httpx.Client, Path]) -> None:
    client, _ = api
    raw = ADT.replace(b"MSG00001", b"REST-2").replace(b"\r", b"\r\n")
    r = client.post("/messages", content=raw, headers={"Content-Type": "text/plain; charset=utf-8", **_auth(SUBMIT)})
    assert r.status_code == 202, r.text


def test_no_token_unknown_token_and_wrong_scope(api: tuple[httpx.Client, Path]) -> None:
    client, _ = api
    none = client.post("/messages", content=ADT, headers=HL7)
    assert none.status_code == 401 and none.headers["www-authenticate"].startswith("Bearer")
    assert none.headers["content-type"] == "application/problem+json"
    unknown = client.post("/messages", content=ADT, headers={**HL7, **_auth("nope")})
    assert unknown.status_code == 401 and unknown.json()["title"] == "Unknown token"
    scope = client.post("/messages", content=ADT, headers={**HL7, **_auth(READER)})
    assert scope.status_code == 403 and scope.json()["detail"] == "token 'dashboard' has scopes: read"


def test_oversized_body(api: tuple[httpx.Client, Path]) -> None:
    client, _ = api
    big = ADT + b"NTE|1||" + b"x" * 5000 + b"\r"
    r = client.post("/messages", content=big, headers={**HL7, **_auth(SUBMIT)})
    assert r.status_code == 413 and r.json()["detail"] == "at most 4096 bytes"


def test_malformed_hl7_names_segment_and_field(api: tuple[httpx.Client, Path]) -> None:
    client, _ = api
    r = client.post("/messages", content=b"MSH|AB|APP|FAC\rPID|1", headers={**HL7, **_auth(SUBMIT)})
    problem = r.json()
    assert r.status_code == 400 and problem["type"].endswith("/invalid-hl7v2")
    assert (problem["segment"], problem["field"]) == ("MSH", 2) and problem["message_id"]
    assert "Traceback" not in r.text
    assert _status(client, problem["message_id"], Status.FAILED) == Status.FAILED  # kept, visible as failed


def test_wrong_content_type(api: tuple[httpx.Client, Path]) -> None:
    client, _ = api
    r = client.post("/messages", content=b"{}", headers={"Content-Type": "application/json", **_auth(SUBMIT)})
    assert r.status_code == 415 and r.json()["received"] == "application/json"


def test_idempotent_retry(api: tuple[httpx.Client, Path]) -> None:
    client, _ = api
    headers = {**HL7, **_auth(SUBMIT), "Idempotency-Key": "k-42"}
    raw = ADT.replace(b"MSG00001", b"REST-IDEM")
    first = client.post("/messages", content=raw, headers=headers)
    again = client.post("/messages", content=raw, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"] and again.headers["idempotent-replayed"] == "true"
    other = client.post("/messages", content=raw.replace(b"REST-IDEM", b"REST-OTHER"), headers=headers)
    assert other.status_code == 422


def test_rate_limit(api: tuple[httpx.Client, Path]) -> None:
    client, _ = api
    codes = [client.post("/messages", content=ADT.replace(b"MSG00001", f"RATE-{i}".encode()),
                         headers={**HL7, **_auth(SLOW)}).status_code for i in range(3)]
    assert codes == [202, 202, 429]
    r = client.post("/messages", content=ADT, headers={**HL7, **_auth(SLOW)})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_unknown_message_and_openapi(api: tuple[httpx.Client, Path]) -> None:
    client, _ = api
    assert client.get("/messages/nope", headers=_auth(READER)).status_code == 404
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.") and {"/messages", "/messages/{message_id}"} <= set(doc["paths"])


FHIR = {"Content-Type": "application/fhir+json"}


def _wait_bundle(project: Path, predicate: object, timeout: float = 20) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in out_lines(project):
            bundle = orjson.loads(line)
            if predicate(bundle):  # type: ignore[operator]
                return bundle
        time.sleep(0.1)
    raise AssertionError("no such bundle delivered")


def test_a_fhir_resource_is_validated_wrapped_and_routed(api: tuple[httpx.Client, Path]) -> None:
    client, project = api
    patient = {"resourceType": "Patient", "id": "zz-rest-1", "gender": "female", "birthDate": "1990-01-01"}
    r = client.post("/messages", content=orjson.dumps(patient), headers={**FHIR, **_auth(SUBMIT)})
    assert r.status_code == 202, r.text
    assert _status(client, r.json()["id"], Status.DELIVERED) == Status.DELIVERED
    bundle = _wait_bundle(project, lambda b: b["entry"][0].get("fullUrl") == "Patient/zz-rest-1")
    assert bundle["type"] == "transaction"
    assert bundle["entry"] == [{"resource": patient, "request": {"method": "PUT", "url": "Patient/zz-rest-1"},
                                "fullUrl": "Patient/zz-rest-1"}]


def test_a_transaction_bundle_goes_through_unchanged_and_once(api: tuple[httpx.Client, Path]) -> None:
    client, project = api
    tx = {"resourceType": "Bundle", "type": "transaction", "identifier": {"system": "urn:x", "value": "TX-7"},
          "entry": [{"resource": {"resourceType": "Patient", "gender": "male"},
                     "request": {"method": "POST", "url": "Patient"}}]}
    first = client.post("/messages", content=orjson.dumps(tx), headers={**FHIR, **_auth(SUBMIT)})
    again = client.post("/messages", content=orjson.dumps(tx), headers={**FHIR, **_auth(SUBMIT)})
    assert first.status_code == again.status_code == 202
    assert again.json() == {**first.json(), "duplicate": True}  # same Bundle.identifier: not processed twice
    delivered = _wait_bundle(project, lambda b: b.get("identifier", {}).get("value") == "TX-7")
    assert delivered == tx


@pytest.mark.parametrize(("body", "field", "detail"), [
    (b'{"resourceType":"Patient","birthDate":"1990-13-01"}', "birthDate", "birthDate: Value error"),
    (b'{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","nope":1}}]}',
     "entry[0].resource.nope", "entry[0].resource.nope: Extra inputs are not permitted"),
    (b'{"resourceType":"Patientt"}', "resourceType", "unknown resourceType 'Patientt'"),
    (b'{"gender":"male"}', "resourceType", "resourceType is missing"),
])
def test_malformed_fhir_names_the_field(api: tuple[httpx.Client, Path], body: bytes, field: str,
                                        detail: str) -> None:
    client, _ = api
    r = client.post("/messages", content=body, headers={**FHIR, **_auth(SUBMIT)})
    problem = r.json()
    assert r.status_code == 400 and problem["type"].endswith("/invalid-fhir"), r.text
    assert problem["field"] == field and problem["detail"].startswith(detail)


def test_not_json(api: tuple[httpx.Client, Path]) -> None:
    client, _ = api
    r = client.post("/messages", content=b"{not json", headers={**FHIR, **_auth(SUBMIT)})
    assert r.status_code == 400 and r.json()["title"] == "Not JSON"


def test_a_csv_upload_goes_through_the_csv_map(api: tuple[httpx.Client, Path]) -> None:
    client, project = api
    sample = (ROOT / "mappings/csv_lab/fixtures/resultats.csv").read_text(encoding="utf-8")
    body = (sample + "LAB-7003;IPP1;ZZBAD;X;01/01/1980;F;GLY;Glycémie;abc;mmol/l;3.9-6.1;21/11/2026 09:00\n")
    headers = {"Content-Type": "text/csv", **_auth(SUBMIT)}
    r = client.post("/messages", content=body.encode("utf-8"), headers=headers)
    assert r.status_code == 202, r.text
    answer = r.json()
    assert (answer["rows"], answer["messages"]) == (4, 2)
    assert answer["rejected"] == [{"line": 5, "reason": "column resultat: expected a number, got 3 characters"}]
    again = client.post("/messages", content=body.encode("utf-8"), headers=headers)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    bundle = _wait_bundle(project, lambda b: any(e["resource"].get("code", {}).get("coding", [{}])[0].get("code")
                                                 == "HB" for e in b["entry"]))
    assert bundle["type"] == "transaction"
