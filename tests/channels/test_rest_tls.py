"""The REST channel over HTTPS with mutual TLS: our CA's client certificate in, no or a rogue one out."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.channels.certs import pki
from tests.support import ROOT, engine, free_port, make_project, wait_port

TOKEN = "tok-tls-0123456789"
ADT = (ROOT / "mappings/adt/fixtures/ma-chu-admission.hl7").read_bytes()
HEADERS = {"Content-Type": "application/hl7-v2", "Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Path]]]:
    project = make_project(tmp_path_factory.mktemp("rest-tls"))
    certs = pki(tmp_path_factory.mktemp("pki"))
    port = free_port()
    (project / "config/channels/adt-rest.yaml").write_text(
        f"input:\n  rest:\n    port: {port}\n"
        f"    tls: {{cert: {certs['server']}, key: {certs['server_key']}, client_ca: {certs['ca']}}}\n"
        f"    tokens:\n      - {{name: lab, sha256: {hashlib.sha256(TOKEN.encode()).hexdigest()}}}\n"
        "pipeline:\n  mapping: adt\noutput:\n  - archive-ndjson\n", encoding="utf-8")
    with engine(project) as proc:
        wait_port(port, proc=proc)
        yield f"https://127.0.0.1:{port}", certs


def _client(certs: dict[str, Path], cert: str | None) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(certs["ca"]))
    if cert:
        ctx.load_cert_chain(str(certs[cert]), str(certs[f"{cert}_key"]))
    return httpx.Client(verify=ctx, timeout=10)


def test_client_certificate_from_our_ca_is_accepted(server: tuple[str, dict[str, Path]]) -> None:
    url, certs = server
    with _client(certs, "lab") as client:
        r = client.post(f"{url}/messages", content=ADT, headers=HEADERS)
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("cert", [None, "rogue"])
def test_no_or_rogue_client_certificate_is_refused(server: tuple[str, dict[str, Path]], cert: str | None) -> None:
    url, certs = server
    with _client(certs, cert) as client, pytest.raises((httpx.ConnectError, httpx.ReadError,
                                                        httpx.RemoteProtocolError)):
        client.post(f"{url}/messages", content=ADT, headers=HEADERS)
