"""The inbound connector `rest`: HL7 v2 messages POSTed over HTTP, with the same guarantees as MLLP.

    POST /messages          (Content-Type: application/hl7-v2 or text/plain) → 202 once the message is durable
                            (Content-Type: application/fhir+json) a FHIR R4 resource or Bundle, validated
                            against the R4 model, then routed as it is
                            (Content-Type: text/csv, with csv_map) rows read through the channel's CSV map
    GET  /messages/{id}     → where the message is (received, transformed, delivered, failed, parked …)
    GET  /openapi.json      → this API, described (channels.rest_openapi)

Senders authenticate with a bearer token; only its SHA-256 is in the channel YAML (`wasla token new`).
A token carries scopes (`submit`, `read`) and a rate limit (channels.rest_auth). Every error is an
RFC 9457 problem+json body that names what was wrong (and, for a bad message, the segment and field),
never a stack trace (channels.rest_http). `Idempotency-Key` makes a retry return the first answer
instead of a second message (channels.rest_idempotency). FHIR bodies are read strictly and validated
before anything is claimed or journaled (channels.rest_fhir).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import ssl
import tempfile
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from channels.csvfile import CSV_LAYOUT_OPTIONS
from channels.rest_auth import Tokens
from channels.rest_fhir import check_fhir
from channels.rest_http import CSV_TYPES, FHIR_TYPES, HL7_TYPES, json_response, problem
from channels.rest_idempotency import KEY_MAX, IdempotencyKeys
from channels.rest_openapi import openapi_document
from engine.connectors.fields import Field, options_of
from engine.connectors.ports import InputPorts, Receipt
from engine.connectors.toolkit import ChannelConfig, error_fields, find_csvmap

__all__ = ["RESTInput"]

_log = structlog.get_logger("wasla.rest")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the engine owns SIGTERM/SIGINT and stops every input itself


_ENCODINGS = ("auto", "ascii", "latin-1", "utf-8", "utf-8-sig", "cp1252")

REST_OPTIONS = (
    Field("host", "string", default="127.0.0.1"),
    Field("port", "integer", required=True, minimum=1, maximum=65535, examples=(8080,), claim="port"),
    Field("max_body_bytes", "integer", minimum=1024, default=1048576, description="Larger bodies get 413."),
    Field("rate_limit_per_minute", "integer", minimum=1, default=600,
          description="Per token, unless the token says otherwise; then 429 with Retry-After."),
    Field("duplicate_window_s", "integer", minimum=0, default=86400),
    Field("encoding", "string", enum=_ENCODINGS, default="auto"),
    Field("csv_map", "string", pattern="^[a-z0-9_]+$",
          description="Accept text/csv bodies, read through this CSV map (as a csv_drop file)."),
    Field("sender", "string", description="With csv_map: who sends the CSV (MSH-4 of the messages it stands for)."),
    *CSV_LAYOUT_OPTIONS,
    Field("tls", "object", description="HTTPS; with client_ca, mutual TLS (the bearer token is still required).",
          fields=(Field("cert", "string", required=True, path=True, description="Server certificate chain (PEM)."),
                  Field("key", "string", required=True, path=True, description="Server private key (PEM)."),
                  Field("client_ca", "string", path=True,
                        description="CA bundle that client certificates must chain to."),
                  Field("require_client_cert", "boolean", default=True))),
    Field("tokens", "array", required=True, min_items=1,
          description="Who may call: only the SHA-256 of each token is stored (wasla token new).",
          items=(Field("name", "string", required=True, pattern="^[A-Za-z0-9_.-]+$", examples=("his",),
                       expected="a short name for the sender (letters, digits, . _ -)"),
                 Field("sha256", "string", required=True, pattern="^[0-9a-f]{64}$", examples=("0" * 64,),
                       expected="the token's SHA-256 in hex, as wasla token new prints it"),
                 Field("scopes", "array", items={"enum": ["submit", "read"]}, default=("submit", "read")),
                 Field("rate_limit_per_minute", "integer", minimum=1))),
)


class RESTInput:
    """The inbound connector `rest`: an HTTP server on `host:port` for one channel.

    Owns its server, its tokens (`Tokens`, with their rate buckets) and its Idempotency-Keys
    (`IdempotencyKeys`); its options are `REST_OPTIONS`, read once into `self.options`. Guarantees: a
    202 only once the message is durable; a body over `max_body_bytes` is refused before it is read
    whole; every error is a problem+json answer, an unexpected one a 500 that is safe to retry.
    """

    description = "HL7 v2 over HTTP: POST /messages, GET /messages/{id}, GET /openapi.json."
    options_spec = REST_OPTIONS

    def __init__(self, channel: ChannelConfig, intake: InputPorts, executor: Executor) -> None:
        self.channel = channel
        self.intake = intake
        self.executor = executor
        o = self.options = options_of(self, channel.input)
        self.host = str(o.host)
        self.port = int(o.port)
        self.max_body = int(o.max_body_bytes)
        self.tokens = Tokens(o.tokens or (), int(o.rate_limit_per_minute))
        self.keys = IdempotencyKeys(channel.id, intake.idempotency, executor)
        self.app = Starlette(routes=[
            Route("/messages", self.post_message, methods=["POST"]),
            Route("/messages/{message_id}", self.get_message, methods=["GET"]),
            Route("/openapi.json", self.openapi, methods=["GET"]),
        ], exception_handlers={Exception: self._internal})
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        tls = self.options.tls
        client_ca = tls.client_ca if tls else None
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_config=None, access_log=False, lifespan="off",
            server_header=False, ssl_certfile=tls.cert if tls else None, ssl_keyfile=tls.key if tls else None,
            ssl_ca_certs=client_ca,
            ssl_cert_reqs=(ssl.CERT_REQUIRED if tls and tls.require_client_cert else ssl.CERT_OPTIONAL)
            if client_ca else ssl.CERT_NONE)
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises why it could not listen
                raise OSError(f"REST channel {self.channel.id} could not listen on {self.host}:{self.port}")
            await asyncio.sleep(0.01)
        _log.info("rest_listening", channel=self.channel.id, host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task

    # -- requests ---------------------------------------------------------------------------------

    async def _internal(self, request: Request, exc: Exception) -> Response:
        _log.error("rest_internal_error", channel=self.channel.id, path=request.url.path, **error_fields(exc))
        return problem(500, "internal", "Internal error", "the request was not processed; it is safe to retry")

    async def _body(self, request: Request) -> bytes | Response:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body:
            return problem(413, "too-large", "Request body too large", f"at most {self.max_body} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                return problem(413, "too-large", "Request body too large", f"at most {self.max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def post_message(self, request: Request) -> Response:
        token = self.tokens.authorize(request, "submit")
        if isinstance(token, Response):
            return token
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        csv_ok = bool(self.options.csv_map)
        if media not in HL7_TYPES + FHIR_TYPES + (CSV_TYPES if csv_ok else ()):
            return problem(415, "unsupported-media-type", "Unsupported content type",
                           f"send HL7 v2 as one of {', '.join(HL7_TYPES)}, or FHIR as application/fhir+json"
                           + (", or CSV as text/csv" if csv_ok else ""), received=media or "(none)")
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        key = request.headers.get("idempotency-key", "").strip()
        if len(key) > KEY_MAX:
            return problem(400, "invalid-idempotency-key", "Idempotency-Key too long", f"at most {KEY_MAX} characters")
        loop = asyncio.get_running_loop()
        checked: tuple[str, str] | None = None
        if media in FHIR_TYPES:  # the same bytes always get the same refusal: checked before the key is claimed
            found = await loop.run_in_executor(self.executor, check_fhir, body)
            if isinstance(found, Response):
                return found
            checked = found
        raw = body if media not in HL7_TYPES else body.replace(b"\r\n", b"\r")

        async def receive() -> Response:
            if media in CSV_TYPES:
                return await loop.run_in_executor(self.executor, self._csv, body)
            if checked is not None:
                receipt = await self.intake.receive_fhir_async(self.channel, raw, resource_type=checked[0],
                                                               control_id=checked[1], peer=_peer(request),
                                                               client=token.name, executor=self.executor)
            else:
                receipt = await self.intake.receive_async(self.channel, raw, peer=_peer(request),
                                                          client=token.name, executor=self.executor)
            return self._answer(receipt)

        if not key:
            return await receive()
        return await self.keys.once(token.name, key, hashlib.sha256(body).hexdigest(), raw, receive)

    def _answer(self, receipt: Receipt) -> Response:
        if receipt.error is not None:
            err = receipt.error
            where: dict[str, Any]
            where = {k: v for k, v in (("segment", err.segment), ("sequence", err.sequence), ("field", err.field))
                     if v}
            return problem(400, "invalid-hl7v2", "Not a readable HL7 v2 message", err.message,
                           message_id=receipt.message_id, **where)
        if not receipt.accepted:
            return problem(503, "unavailable", "Not accepted", receipt.reason, headers={"Retry-After": "5"},
                           message_id=receipt.message_id)
        body: dict[str, Any] = {"id": receipt.message_id, "status_url": f"/messages/{receipt.message_id}"}
        if receipt.duplicate_of:
            body["duplicate"] = True
        if receipt.reason:
            body["note"] = receipt.reason
        return json_response(body, 202, {"Location": f"/messages/{receipt.message_id}"})

    def _csv(self, body: bytes) -> Response:
        """A CSV upload, through the channel's CSV map like a dropped file: 202 with what was taken and each
        rejected row's line and reason; the same bytes again are recognised and not taken twice."""
        from channels.csv_drop import ingest_file

        sha = hashlib.sha256(body).hexdigest()
        files = self.intake.files
        if files.claim_upload(self.channel.id, sha, "upload.csv") is not None:
            state = files.status(self.channel.id, sha)
            return json_response({"duplicate": True, "sha256": sha, "status": state[0] if state else "",
                                  "messages": state[2] if state else 0}, 200)
        where = self.intake.mappings
        csvmap = find_csvmap(where.mappings_dir, str(self.options.csv_map), where.schema_dir)
        with tempfile.TemporaryDirectory() as tmp:
            src, rejects = Path(tmp) / "upload.csv", Path(tmp) / "rejects.csv"
            src.write_bytes(body)
            try:
                tally = ingest_file(src, self.channel, self.intake, csvmap, rejects, sha)
            except (OSError, UnicodeError, ValueError, csv.Error) as exc:
                files.done(self.channel.id, sha, "failed", 0, 0, 0)
                return problem(400, "invalid-csv", "The CSV could not be read", exc.__class__.__name__)
            rejected = []
            if rejects.exists():
                with rejects.open(encoding="utf-8", newline="") as fh:
                    rejected = [{"line": int(r[0]), "reason": r[1]} for r in list(csv.reader(fh))[1:]]
        files.done(self.channel.id, sha, "done", tally.rows, tally.messages, tally.rejected)
        return json_response({"sha256": sha, "rows": tally.rows, "messages": tally.messages,
                              "rejected": rejected}, 202)

    async def get_message(self, request: Request) -> Response:
        token = self.tokens.authorize(request, "read")
        if isinstance(token, Response):
            return token
        mid = request.path_params["message_id"]
        row = await asyncio.get_running_loop().run_in_executor(self.executor, self.intake.messages.get, mid)
        if row is None or row.channel != self.channel.id:
            return problem(404, "not-found", "No such message on this channel", message_id=mid)
        return json_response({"id": row.id, "status": row.status, "stage": row.stage, "reason": row.reason,
                              "message_type": row.message_type, "control_id": row.control_id,
                              "received_at": row.received_at.isoformat()})

    async def openapi(self, request: Request) -> Response:
        return json_response(openapi_document(self.channel.id, self.max_body, bool(self.options.csv_map)))


def _peer(request: Request) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client else ""
