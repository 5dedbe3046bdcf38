"""The FHIR destination alone, against the real FHIR server: modes, answers read per entry, auth.

The authentication checks sit in the test proxy (tests/fhirserver.py), a stand-in for the
hospital's API gateway and OAuth2 token endpoint; every accepted request is answered by the
real server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import orjson
import pytest

from channels.fhir import FHIROutput
from engine.config import DestinationConfig
from engine.errors import PermanentDeliveryError, TransientDeliveryError
from tests.fhirserver import FaultProxy, server_count

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = (ROOT / "mappings" / "adt" / "fixtures" / "ma-chu-admission.json").read_bytes()


_MADE: list[FHIROutput] = []


def _output(base: str, **options: Any) -> FHIROutput:
    out = FHIROutput(DestinationConfig("fhir", "x.yaml", "fhir", MappingProxyType({"base_url": base, **options})))
    _MADE.append(out)
    return out


@pytest.fixture(autouse=True)
def _close_outputs() -> Iterator[None]:
    yield
    while _MADE:
        _MADE.pop().close()


@pytest.fixture
def proxy(fhir_base: str) -> Iterator[FaultProxy]:
    httpx.post(fhir_base.removesuffix("/fhir") + "/_admin/reset", timeout=30)
    p = FaultProxy(int(fhir_base.split(":")[2].split("/")[0]))
    yield p
    p.close()


@pytest.mark.parametrize("mode", ["transaction", "batch", "requests"])
def test_each_mode_writes_once_whatever_the_resends(proxy: FaultProxy, mode: str) -> None:
    out = _output(proxy.base, mode=mode)
    first = out.deliver("m1", BUNDLE, None)  # type: ignore[arg-type]
    again = out.deliver("m1", BUNDLE, None)  # type: ignore[arg-type]
    types = [e["resource"]["resourceType"] for e in json.loads(BUNDLE)["entry"]]
    assert {"Patient", "Encounter", "Location", "Provenance"} <= set(types)
    assert [loc.split("/")[0] for loc in first.split()] == types
    assert first == again  # the same resources, found again by identifier or id
    for rtype in set(types):
        assert server_count(proxy.upstream_base, rtype) == types.count(rtype)
    out.close()


def test_answers_decide_transient_or_permanent(proxy: FaultProxy) -> None:
    out = _output(proxy.base)
    proxy.ratio = 1.0
    with pytest.raises(TransientDeliveryError, match="HTTP 503"):
        out.deliver("m1", BUNDLE, None)  # type: ignore[arg-type]
    proxy.ratio = 0.0
    proxy.reject["IPP123456"] = (422, {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "business-rule", "diagnostics": "patient unknown to the registry"}]})
    with pytest.raises(PermanentDeliveryError, match="HTTP 422.*patient unknown to the registry") as err:
        out.deliver("m1", BUNDLE, None)  # type: ignore[arg-type]
    assert json.loads(err.value.response)["issue"][0]["code"] == "business-rule"
    proxy.reject["IPP123456"] = (429, {"resourceType": "OperationOutcome", "issue": []})
    with pytest.raises(TransientDeliveryError, match="HTTP 429"):
        out.deliver("m1", BUNDLE, None)  # type: ignore[arg-type]
    proxy.down()
    with pytest.raises(TransientDeliveryError, match="cannot reach the server"):
        _output(proxy.base, connect_timeout_s=1).deliver("m1", BUNDLE, None)  # type: ignore[arg-type]


def test_an_entry_refused_inside_a_transaction_response_is_permanent(proxy: FaultProxy) -> None:
    """Medplum answers 200 with a 4xx entry (the others applied): the entry decides, its outcome is kept."""
    upstream = proxy.upstream_base
    patient = orjson.loads(BUNDLE)["entry"][0]["resource"]
    for _ in range(2):
        httpx.post(f"{upstream}/Patient", json=patient, timeout=10)
    with pytest.raises(PermanentDeliveryError, match="entry 0: 400") as err:
        _output(proxy.base).deliver("m1", BUNDLE, None)  # type: ignore[arg-type]
    assert "multiple" in json.loads(err.value.response)["issue"][0]["details"]["text"]


def test_bearer_basic_and_client_credentials(proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DMP_TOKEN", "s3cret")
    proxy.require_auth = "Bearer s3cret"
    assert _output(proxy.base, auth={"type": "bearer", "token_env": "DMP_TOKEN"}).deliver("m", BUNDLE, None)  # type: ignore[arg-type]
    with pytest.raises(PermanentDeliveryError, match="HTTP 401"):
        _output(proxy.base).deliver("m", BUNDLE, None)  # type: ignore[arg-type]

    monkeypatch.setenv("DMP_PASSWORD", "pa55")
    proxy.require_auth = "Basic d2FzbGE6cGE1NQ=="  # wasla:pa55
    assert _output(proxy.base, auth={"type": "basic", "username": "wasla",
                                     "password_env": "DMP_PASSWORD"}).deliver("m", BUNDLE, None)  # type: ignore[arg-type]

    monkeypatch.setenv("DMP_CLIENT_SECRET", "cs")
    proxy.client = ("wasla-chu", "cs")
    out = _output(proxy.base, auth={"type": "client_credentials", "token_url": f"http://127.0.0.1:{proxy.port}/token",
                                    "client_id": "wasla-chu", "client_secret_env": "DMP_CLIENT_SECRET"})
    assert out.deliver("m", BUNDLE, None)  # type: ignore[arg-type]
    assert out.deliver("m", BUNDLE, None)  # type: ignore[arg-type]
    assert proxy.tokens_issued == 1  # cached until it expires
    proxy.require_auth = "Bearer revoked"  # the server stops taking it: one fresh token, then on
    assert out.deliver("m", BUNDLE, None)  # type: ignore[arg-type]
    assert proxy.tokens_issued == 2

    monkeypatch.delenv("DMP_TOKEN")
    with pytest.raises(TransientDeliveryError, match="environment variable DMP_TOKEN is not set"):
        _output(proxy.base, auth={"type": "bearer", "token_env": "DMP_TOKEN"}).deliver("m", BUNDLE, None)  # type: ignore[arg-type]


class TestFHIRTLS:
    """The FHIR destination over mutual TLS, its `ca`, `cert` and `key` given relative to the configuration folder."""

    @pytest.fixture
    def remote(self, tmp_path: Path) -> Iterator[tuple[Path, int, list[str]]]:
        import ssl
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from tests.channels.certs import pki

        certs = pki(tmp_path)
        seen: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                seen.append(self.connection.getpeercert()["subject"][0][0][1])  # type: ignore[attr-defined]
                body = orjson.dumps({"resourceType": "Bundle", "type": "transaction-response", "entry": [
                    {"response": {"status": "201 Created", "location": "Patient/p1/_history/1"}}]})
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs["ca"]))
        ctx.verify_mode = ssl.CERT_REQUIRED  # the remote insists on our client certificate
        ctx.load_cert_chain(str(certs["server"]), str(certs["server_key"]))
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield tmp_path, server.server_address[1], seen
        server.shutdown()
        server.server_close()

    def _output(self, root: Path, port: int, client: str) -> FHIROutput:
        tls = {"ca": "wasla-test-ca.crt", "cert": f"{client}.crt", "key": f"{client}.key"}
        if client == "rogue":
            tls = {"ca": "wasla-test-ca.crt", "cert": "rogue/lab-central.crt", "key": "rogue/lab-central.key"}
        out = FHIROutput(DestinationConfig("dmp", "dmp.yaml", "fhir", MappingProxyType(
            {"base_url": f"https://localhost:{port}/fhir", "tls": tls})), root)
        _MADE.append(out)
        return out

    def test_mutual_tls_with_paths_from_the_configuration_folder(
            self, remote: tuple[Path, int, list[str]]) -> None:
        root, port, seen = remote
        bundle = orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1"}, "request": {"method": "PUT", "url": "Patient/p1"}}]})
        assert self._output(root, port, "lab-central").deliver("m1", bundle, None) == "Patient/p1"  # type: ignore[arg-type]
        assert seen == ["lab-central"]

    def test_a_client_certificate_from_another_ca_is_refused(self, remote: tuple[Path, int, list[str]]) -> None:
        root, port, seen = remote
        with pytest.raises(TransientDeliveryError):
            self._output(root, port, "rogue").deliver("m1", b"{}", None)  # type: ignore[arg-type]
        assert seen == []


CLAIM = {"resourceType": "Claim", "id": "c0ffee00-0000-5000-8000-000000000001", "status": "active", "use": "claim",
         "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
         "patient": {"reference": "urn:uuid:00000000-0000-5000-8000-000000000001"}, "created": "2026-11-05",
         "provider": {"display": "CHU"}, "priority": {"coding": [{"code": "normal"}]},
         "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "AMO"}}]}
CLAIM_BUNDLE = orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
    {"fullUrl": f"urn:uuid:{CLAIM['id']}", "resource": CLAIM,
     "request": {"method": "PUT", "url": f"Claim/{CLAIM['id']}"}},
    {"fullUrl": "urn:uuid:00000000-0000-5000-8000-000000000001",
     "resource": {"resourceType": "Patient", "id": "00000000-0000-5000-8000-000000000001"},
     "request": {"method": "PUT", "url": "Patient/00000000-0000-5000-8000-000000000001"}}]})


class TestClaimSubmit:
    """`claim_submit: true`: a Claim Bundle goes to the insurer's Claim/$submit, not as a transaction."""

    def test_a_server_without_the_operation_is_permanent_with_its_outcome(self, proxy: FaultProxy) -> None:
        """Medplum's router has no Claim/$submit: it answers 404 with an OperationOutcome `not-found`, kept;
        nothing is written on the server."""
        with pytest.raises(PermanentDeliveryError, match=r"HTTP 404 from POST .*/Claim/\$submit") as err:
            _output(proxy.base, claim_submit=True).deliver("m1", CLAIM_BUNDLE, None)  # type: ignore[arg-type]
        assert json.loads(err.value.response)["issue"][0]["code"] == "not-found"
        assert server_count(proxy.upstream_base, "Claim") == 0
        assert server_count(proxy.upstream_base, "Patient") == 0

    def test_not_implemented_is_permanent_and_a_claim_response_is_the_location(self, proxy: FaultProxy) -> None:
        """501 is no passing failure for this operation; an insurer's ClaimResponse is journaled as the location."""
        out = _output(proxy.base, claim_submit=True)
        proxy.reject[CLAIM["id"]] = (501, {"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "not-supported", "diagnostics": "operation $submit is not supported"}]})
        with pytest.raises(PermanentDeliveryError, match="HTTP 501.*not supported"):
            out.deliver("m1", CLAIM_BUNDLE, None)  # type: ignore[arg-type]
        proxy.reject[CLAIM["id"]] = (200, {"resourceType": "ClaimResponse", "id": "cr-1", "status": "active",
                                           "outcome": "queued"})
        assert out.deliver("m1", CLAIM_BUNDLE, None) == "ClaimResponse/cr-1"  # type: ignore[arg-type]

    def test_other_messages_still_go_as_a_transaction(self, proxy: FaultProxy) -> None:
        """A Bundle whose first entry is not a Claim is written by `mode:` as before."""
        first = _output(proxy.base, claim_submit=True).deliver("m1", BUNDLE, None)  # type: ignore[arg-type]
        assert first.split()[0].startswith("Patient/")
        assert server_count(proxy.upstream_base, "Patient") == 1
