"""The real FHIR server of the tests (`../shared/tools/fhir-server`: Medplum's FHIR router in memory),
and a fault-injecting HTTP proxy in front of it.

The proxy is not a fake server: every request it lets through is answered by the real one. It
adds what the server's own hook cannot: a share of requests failed at random (seeded), half of
them *before* reaching the server and half *after* (the server applied the Bundle, the answer is
lost: the redelivery must not duplicate anything), and a complete outage (connection refused).
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.support import TOOLS, free_port

__all__ = ["FaultProxy", "fhir_server", "server_count"]


@contextmanager
def fhir_server() -> Iterator[str]:
    """Start the shared tool's FHIR server on a free port; yields its base URL (…/fhir)."""
    port = free_port()
    log = Path(f"/tmp/wasla-fhir-server-{port}.log")
    with log.open("wb") as out:
        proc = subprocess.Popen([str(TOOLS / "fhir-server"), str(port)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 300  # the first use installs its npm packages
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"fhir-server exited: {log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/fhir"
    finally:
        proc.terminate()
        proc.wait(10)


def server_count(base: str, resource: str, query: str = "") -> int:
    r = httpx.get(f"{base}/{resource}?_summary=count{'&' + query if query else ''}", timeout=60)
    r.raise_for_status()
    return int(r.json()["total"])


def server_search(base: str, resource: str, query: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{base}/{resource}?{query}&_count=1000", timeout=60)
    r.raise_for_status()
    return [e["resource"] for e in r.json().get("entry", [])]


class FaultProxy:
    """HTTP proxy to `upstream` (host, port) that fails `ratio` of requests with 503 and can go down."""

    def __init__(self, upstream_port: int, ratio: float = 0.0, seed: int = 7) -> None:
        self.upstream_port = upstream_port
        self.ratio = ratio
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.port = free_port()
        self.stats = {"forwarded": 0, "failed_before": 0, "failed_after": 0, "refused_while_down": 0}
        self.reject: dict[str, tuple[int, dict[str, Any]]] = {}  # body substring → (status, OperationOutcome)
        # Authentication double (what the hospital's API gateway would check): the Authorization header
        # every request must carry, and an OAuth2 client-credentials token endpoint at /token.
        self.require_auth: str | None = None
        self.client: tuple[str, str] | None = None   # (client id, secret) the token endpoint accepts
        self.tokens_issued = 0
        self._server: ThreadingHTTPServer | None = None
        self._sockets: set[socket.socket] = set()
        self.up()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    @property
    def upstream_base(self) -> str:
        """The real server's base URL, past the proxy (to count what it holds)."""
        return f"http://127.0.0.1:{self.upstream_port}/fhir"

    def _decide(self) -> str:
        with self.lock:
            r = self.rng.random()
        if r < self.ratio / 2:
            return "before"
        if r < self.ratio:
            return "after"
        return "pass"

    def up(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle + delayed-ACK stall
                proxy._sockets.add(self.connection)

            def finish(self) -> None:
                proxy._sockets.discard(self.connection)
                super().finish()

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/fhir+json")
                self.send_header("content-length", str(len(body)))
                self._headers_buffer.append(b"\r\n" + body)  # headers and body in one write
                self.flush_headers()

            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(body) != length:  # the client went away mid-body (an outage cut it): forward nothing,
                    self.close_connection = True  # or the server would wait for the rest and, in the end,
                    return                        # die of the aborted request (the tool does not survive it)
                if self.path == "/token":
                    form = dict(p.split("=", 1) for p in body.decode().split("&") if "=" in p)
                    if proxy.client and (form.get("client_id"), form.get("client_secret")) == proxy.client:
                        proxy.tokens_issued += 1
                        token = f"tok{proxy.tokens_issued}"
                        proxy.require_auth = f"Bearer {token}"
                        self._answer(200, json.dumps({"access_token": token, "token_type": "Bearer",
                                                      "expires_in": 300}).encode())
                    else:
                        self._answer(401, b'{"error":"invalid_client"}')
                    return
                if proxy.require_auth is not None and self.headers.get("authorization") != proxy.require_auth:
                    self._answer(401, b'{"resourceType":"OperationOutcome","issue":[{"severity":"error",'
                                      b'"code":"login","diagnostics":"bad or missing credentials"}]}')
                    return
                for needle, (status, outcome) in list(proxy.reject.items()):
                    if needle.encode() in body:
                        self._answer(status, json.dumps(outcome).encode())
                        return
                fate = proxy._decide()
                if fate == "before":
                    proxy.stats["failed_before"] += 1
                    self._answer(503, b'{"resourceType":"OperationOutcome","issue":[{"severity":"error",'
                                      b'"code":"transient","diagnostics":"injected before the server"}]}')
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=120)
                conn.connect()
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                proxy.stats["forwarded"] += 1
                if fate == "after":
                    proxy.stats["failed_after"] += 1
                    self._answer(503, b'{"resourceType":"OperationOutcome","issue":[{"severity":"error",'
                                      b'"code":"transient","diagnostics":"injected after the server"}]}')
                    return
                self._answer(resp.status, data)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def down(self) -> None:
        """Stop listening and cut every open connection: clients get 'connection refused'."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        for s in list(self._sockets):
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.down()
