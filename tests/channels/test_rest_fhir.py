"""The REST channel's FHIR door under hostile input, over a real socket (the engine, uvicorn inside it):
concrete R4 resource types only, duplicate keys refused, a depth limit, numbers delivered exactly as sent;
then a property run: whatever JSON or bytes are POSTed, never a 500, and every status the one the channel's
OpenAPI document declares for POST /messages."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.mapping.fhirjson import R4_RESOURCE_TYPES
from engine.types import Status
from tests.support import engine, free_port, make_project, out_lines, wait_port

TOKEN = "tok-fhir-door-0123456789"
FHIR = {"Content-Type": "application/fhir+json", "Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Path]]:
    project = make_project(tmp_path_factory.mktemp("rest-fhir"))
    port = free_port()
    (project / "config/channels/fhir-rest.yaml").write_text(
        f"input:\n  rest:\n    port: {port}\n    rate_limit_per_minute: 1000000\n    tokens:\n"
        f"      - {{name: his, sha256: {hashlib.sha256(TOKEN.encode()).hexdigest()}}}\n"
        "pipeline:\n  mapping: adt\noutput:\n  - archive-ndjson\n", encoding="utf-8")
    with engine(project) as proc:
        wait_port(port, proc=proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client, project


def _status(client: httpx.Client, mid: str, want: str, timeout: float = 20) -> str:
    deadline, status = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        status = client.get(f"/messages/{mid}", headers=FHIR).json()["status"]
        if status == want:
            break
        time.sleep(0.1)
    return status


@pytest.mark.parametrize("rtype", ["HumanName", "Element", "Resource", "DomainResource", "Extension", "Quantity",
                                   "BackboneElement", "SubscriptionTopic"])
def test_only_concrete_r4_resource_types(api: tuple[httpx.Client, Path], rtype: str) -> None:
    """A data type, an abstract type or a type R4 does not have is refused, at the top or inside, never delivered."""
    client, _ = api
    top = client.post("/messages", content=orjson.dumps({"resourceType": rtype}), headers=FHIR)
    assert top.status_code == 400 and top.json()["field"] == "resourceType", top.text
    assert top.json()["detail"] == f"unknown resourceType '{rtype}': not a concrete FHIR R4 resource type"
    inside = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": {"resourceType": "Patient", "contained": [{"resourceType": rtype}]},
                         "request": {"method": "POST", "url": "Patient"}}]}
    r = client.post("/messages", content=orjson.dumps(inside), headers=FHIR)
    assert r.status_code == 400 and r.json()["field"] == "entry[0].resource.contained[0].resourceType", r.text


def test_duplicate_json_keys_are_refused(api: tuple[httpx.Client, Path]) -> None:
    """The same key twice in one object: 400, since the journal would keep both and a reader only one."""
    client, _ = api
    body = b'{"resourceType":"Patient","id":"zz-dup","gender":"male","gender":"female"}'
    r = client.post("/messages", content=body, headers=FHIR)
    assert r.status_code == 400 and r.json()["title"] == "Duplicate JSON key" and r.json()["field"] == "gender"


@pytest.mark.parametrize(("levels", "title"), [(60, "Too deeply nested"), (330, "Too deeply nested"),
                                               (5000, "Not JSON")])  # past 1024 levels orjson refuses it itself
def test_deep_nesting_is_a_400_not_a_500(api: tuple[httpx.Client, Path], levels: int, title: str) -> None:
    """Nested extensions past the depth limit (100 levels of objects and arrays) are a 400, whatever the depth."""
    client, _ = api
    ext = '{"url":"http://x","valueString":"a"}'
    for _ in range(levels):
        ext = '{"url":"http://x","extension":[' + ext + "]}"
    body = ('{"resourceType":"Patient","extension":[' + ext + "]}").encode()
    r = client.post("/messages", content=body, headers=FHIR)
    assert r.status_code == 400 and r.json()["title"] == title, r.text[:300]


def test_a_resource_within_the_depth_limit_is_taken(api: tuple[httpx.Client, Path]) -> None:
    """40 nested extensions (81 levels) are valid FHIR and accepted."""
    client, _ = api
    ext = '{"url":"http://x","valueString":"a"}'
    for _ in range(40):
        ext = '{"url":"http://x","extension":[' + ext + "]}"
    r = client.post("/messages", content=('{"resourceType":"Patient","extension":[' + ext + "]}").encode(),
                    headers=FHIR)
    assert r.status_code == 202, r.text[:300]


def test_numbers_are_delivered_exactly_as_sent(api: tuple[httpx.Client, Path]) -> None:
    """2^70 and 1.10 reach the destination as written, not as 1.1805916207174113e+21 and 1.1."""
    client, project = api
    body = (b'{"resourceType":"Observation","id":"zz-exact","status":"final","code":{"text":"x"},'
            b'"valueQuantity":{"value":1180591620717411303424},'
            b'"component":[{"code":{"text":"y"},"valueQuantity":{"value":1.10}}]}')
    r = client.post("/messages", content=body, headers=FHIR)
    assert r.status_code == 202, r.text
    assert _status(client, r.json()["id"], Status.DELIVERED) == Status.DELIVERED
    line = next(ln for ln in out_lines(project) if b'"zz-exact"' in ln)
    assert b'"valueQuantity":{"value":1180591620717411303424}' in line
    assert b'"valueQuantity":{"value":1.10}' in line



@pytest.mark.parametrize(("rtype", "body"), [
    ("ClaimResponse", {"resourceType": "ClaimResponse", "id": "zz-cr", "status": "active", "use": "claim",
                       "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type",
                                            "code": "professional"}]},
                       "patient": {"reference": "Patient/p1"}, "created": "2026-11-06", "insurer": {"display": "CNSS"},
                       "outcome": "complete", "request": {"reference": "Claim/c1"}}),
    ("ChargeItem", {"resourceType": "ChargeItem", "id": "zz-ci", "status": "billable",
                    "code": {"coding": [{"system": "https://fhir.wasla.ma/CodeSystem/ma-ngap", "code": "C"}]},
                    "subject": {"reference": "Patient/p1"}}),
])
def test_an_insurers_answer_and_a_charge_are_taken(api: tuple[httpx.Client, Path], rtype: str,
                                                    body: dict[str, Any]) -> None:
    """A ClaimResponse (the insurer's answer to a claim) and a ChargeItem pass the door: no allow-list of
    resource types stands in their way; each is journaled as FHIR^<type>, which the claims stage routes on."""
    client, _ = api
    r = client.post("/messages", content=orjson.dumps(body), headers=FHIR)
    assert r.status_code == 202, r.text
    mid = r.json()["id"]
    assert _status(client, mid, Status.DELIVERED) == Status.DELIVERED
    assert client.get(f"/messages/{mid}", headers=FHIR).json()["message_type"] == f"FHIR^{rtype}"

# -- the property run ---------------------------------------------------------------------------------

_TYPES = sorted(R4_RESOURCE_TYPES)[:40] + ["Patient", "Bundle", "Observation", "HumanName", "Element", "Resource",
                                           "DomainResource", "Extension", "", "patient", "Patientt"]
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63, max_value=2**80),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30))
_json = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=12), inner, max_size=5)),
                     max_leaves=25)
_elements = st.sampled_from(["id", "gender", "birthDate", "name", "identifier", "extension", "contained", "entry",
                             "type", "resource", "request", "status", "code", "valueQuantity", "meta", "text"])


@st.composite
def _resources(draw: st.DrawFn) -> Any:
    """FHIR-shaped: a resourceType (concrete, abstract, a data type or nonsense) and elements of any value."""
    doc = {"resourceType": draw(st.one_of(st.sampled_from(_TYPES), st.text(max_size=20), _json))}
    doc.update(draw(st.dictionaries(_elements, _json, max_size=5)))
    if draw(st.booleans()):
        doc["entry"] = [{"resource": {"resourceType": draw(st.sampled_from(_TYPES))}}]
    return doc


def _nested(depth: int, shape: str) -> bytes:
    if shape == "extensions":  # the shape a validator walks element by element
        return (b'{"resourceType":"Patient","extension":[' + b'{"url":"u","extension":[' * depth + b'{"url":"u"}'
                + b"]}" * depth + b"]}")
    return (b'{"a":' * depth + b"1" + b"}" * depth) if shape == "objects" else (b"[" * depth + b"]" * depth)


@st.composite
def _bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["json", "resource", "resource", "bytes", "mutated", "deep", "numbers"]))
    if kind == "json":
        return json.dumps(draw(_json)).encode()
    if kind == "resource":
        return json.dumps(draw(_resources())).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "deep":
        return _nested(draw(st.integers(1, 3000)), draw(st.sampled_from(["extensions", "objects", "arrays"])))
    if kind == "numbers":
        number = draw(st.sampled_from([b"1e999999", b"-0", b"1" * 5000, b"0.1e-999", b"NaN", b"Infinity", b"01"]))
        return b'{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":' \
            + number + b"}}"
    text = json.dumps(draw(_resources())).encode()  # a valid document with bytes inserted, replaced or cut
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(st.binary(max_size=4)) + text[at + draw(st.integers(0, 3)):]


def test_no_500_and_every_status_is_documented(api: tuple[httpx.Client, Path]) -> None:
    """Arbitrary JSON, FHIR-shaped documents, bytes and deep nesting, with or without an Idempotency-Key:
    the answer is never a 500, always a status POST /messages declares, errors as problem+json."""
    client, _ = api
    declared = set(client.get("/openapi.json").json()["paths"]["/messages"]["post"]["responses"])
    seen: set[int] = set()

    @given(body=_bodies(), key=st.one_of(st.none(), st.text(st.characters(min_codepoint=33, max_codepoint=126),
                                                             min_size=1, max_size=300)))
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    def run(body: bytes, key: str | None) -> None:
        headers = FHIR if key is None else {**FHIR, "Idempotency-Key": key}
        r = client.post("/messages", content=body, headers=headers)
        assert r.status_code != 500 and str(r.status_code) in declared, (r.status_code, r.text[:300])
        if r.status_code >= 400:
            assert r.headers["content-type"] == "application/problem+json" and "Traceback" not in r.text
        seen.add(r.status_code)

    run()
    assert {202, 400} <= seen  # the run reached both the door's refusals and the journal
