"""FHIR REST destination: each message's Bundle to a FHIR R4 server, read back entry by entry.

Modes (`mode:`):
- `transaction` (default): POST the transaction Bundle to the base URL.
- `batch`: the same entries POSTed as a batch (the server applies each on its own).
- `requests`: one request per entry (conditional create, conditional update, PUT by id), for
  servers without transaction support; `urn:uuid:` references are rewritten to the ids the
  server returns as it goes.

With `claim_submit: true` (an insurer's endpoint), a Bundle whose first entry is a Claim (the
`FHIR^Claim` messages of a claims channel) is not written as a transaction: the Claim is POSTed to
`{base}/Claim/$submit`, the insurer's operation, in a Bundle of type `collection` with the resources it
references (their `urn:uuid:` fullUrls kept, so the references resolve inside it; the shape Da Vinci PAS
uses). The answer (a ClaimResponse, or a Bundle holding one) is journaled as the location. A server
without the operation answers 404 (Medplum's router: OperationOutcome `not-found`) or 501: permanent,
with the server's OperationOutcome kept. Other messages on that destination go by `mode:` as usual.

Outcomes, per HTTP status and then per entry of the response Bundle:

    2xx (every entry 2xx)               delivered; the entries' locations are journaled
    408, 429, 5xx, timeout, refused     TransientDeliveryError (retried, then delayed rounds)
    other 4xx (request or any entry)    PermanentDeliveryError, the OperationOutcome kept

Entries are idempotent by construction (PUT by deterministic id, conditional create/update by
business identifier), so re-sending a Bundle after a lost response never makes a duplicate.
Secrets come from the environment only (`token_env`, `password_env`, `client_secret_env`).
"""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import httpx
import orjson

from engine.connectors.capabilities import Capabilities
from engine.connectors.fields import Field, options_of
from engine.connectors.ports import OutputLedger
from engine.connectors.toolkit import CLIENT_TLS, DestinationConfig, client_ssl_context, secret
from engine.errors import PermanentDeliveryError, TransientDeliveryError

__all__ = ["FHIROutput"]

_TRANSIENT = {408, 429}
_HEADERS = {"content-type": "application/fhir+json", "accept": "application/fhir+json"}


def _transient(status: int) -> bool:
    return status in _TRANSIENT or status >= 500


def _outcome_text(body: Any) -> str:
    """The OperationOutcome's issues in one line (codes and diagnostics: the server's words, no PHI of ours)."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ""
    parts = []
    for issue in body.get("issue", [])[:5]:
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or ""
        parts.append(f"{issue.get('severity', '')} {issue.get('code', '')}: {text}".strip())
    return "; ".join(parts)


class _Auth(httpx.Auth):
    """Bearer from the environment, basic, or OAuth2 client credentials (token cached until it expires)."""

    def __init__(self, spec: dict[str, Any], client_options: dict[str, Any]) -> None:
        self.spec = spec
        self.client_options = client_options
        self._token = ""
        self._expires = 0.0
        self._lock = threading.Lock()

    def _env(self, key: str) -> str:
        name = str(self.spec[key])
        value = secret(name)
        if not value:
            raise TransientDeliveryError(f"environment variable {name} is not set ({key} of the destination's auth)")
        return value

    def auth_flow(self, request: httpx.Request) -> Any:
        kind = self.spec["type"]
        if kind == "bearer":
            request.headers["authorization"] = f"Bearer {self._env('token_env')}"
        elif kind == "basic":
            pair = f"{self.spec['username']}:{self._env('password_env')}".encode()
            request.headers["authorization"] = "Basic " + base64.b64encode(pair).decode()
        else:
            request.headers["authorization"] = f"Bearer {self._client_token()}"
        response = yield request
        if response.status_code == 401 and kind == "client_credentials":  # expired early: one fresh token
            self._expires = 0.0
            request.headers["authorization"] = f"Bearer {self._client_token()}"
            yield request

    def _client_token(self) -> str:
        with self._lock:
            if self._token and time.monotonic() < self._expires:
                return self._token
            data = {"grant_type": "client_credentials", "client_id": self.spec["client_id"],
                    "client_secret": self._env("client_secret_env")}
            if self.spec.get("scope"):
                data["scope"] = self.spec["scope"]
            try:
                with httpx.Client(**self.client_options) as client:
                    r = client.post(self.spec["token_url"], data=data)
            except httpx.HTTPError as exc:
                raise TransientDeliveryError(f"token endpoint unreachable: {exc.__class__.__name__}") from exc
            if r.status_code != 200:
                err = (PermanentDeliveryError if 400 <= r.status_code < 500 and not _transient(r.status_code)
                       else TransientDeliveryError)
                raise err(f"token endpoint answered {r.status_code}")
            body = r.json()
            self._token = str(body["access_token"])
            self._expires = time.monotonic() + max(30.0, float(body.get("expires_in", 300)) - 30)
            return self._token


_ENV_NAME = "^[A-Z_][A-Z0-9_]*$"

_AUTH = (
    Field("type", "string", required=True, enum=("bearer", "basic", "client_credentials")),
    Field("token_env", "string", pattern=_ENV_NAME, description="bearer: the environment variable holding the token."),
    Field("username", "string"),
    Field("password_env", "string", pattern=_ENV_NAME),
    Field("token_url", "string", pattern="^https?://"),
    Field("client_id", "string"),
    Field("client_secret_env", "string", pattern=_ENV_NAME),
    Field("scope", "string"),
)

def _when(kind: str, *required: str) -> dict[str, Any]:
    return {"if": {"properties": {"type": {"const": kind}}}, "then": {"required": list(required)}}


FHIR_OPTIONS = (
    Field("base_url", "string", required=True, pattern="^https?://", examples=("https://dmp.sante.gov.ma/fhir",)),
    Field("mode", "string", enum=("transaction", "batch", "requests"), default="transaction",
          description="transaction: POST the Bundle; batch: POST it as a batch (entries independent); requests: one "
                      "request per entry (conditional create / PUT)."),
    Field("timeout_s", "number", exclusive_minimum=0, default=30),
    Field("connect_timeout_s", "number", exclusive_minimum=0, default=5),
    Field("auth", "object", fields=_AUTH, schema={"allOf": [
        _when("bearer", "token_env"), _when("basic", "username", "password_env"),
        _when("client_credentials", "token_url", "client_id", "client_secret_env")]}),
    CLIENT_TLS,
    Field("concurrency", "integer", minimum=1, maximum=64, default=8,
          description="Patients whose messages are sent in parallel; each patient's messages stay in order."),
    Field("claim_submit", "boolean", default=False,
          description="A Claim Bundle (first entry a Claim) is POSTed to {base}/Claim/$submit, the insurer's "
                      "operation, as a collection Bundle, instead of the transaction; 404/501 (no such operation) "
                      "is permanent."),
)


class FHIROutput:
    """The outbound connector `fhir`: owns one keep-alive HTTP client per delivering thread to one FHIR R4 server.
    Options: `FHIR_OPTIONS`."""

    description = ("A FHIR R4 server: each message's Bundle as a transaction (default), as a batch, or as one "
                   "request per resource.")
    options_spec = FHIR_OPTIONS
    capabilities = Capabilities(concurrency=8)
    def __init__(self, config: DestinationConfig, root: Any = None) -> None:
        o = self.options = options_of(self, config.options)
        self.id = config.id
        self.base = str(o.base_url).rstrip("/")
        self.mode = str(o.mode)
        self.claim_submit = bool(o.claim_submit)
        self.concurrency = int(o.concurrency)  # patients sent in parallel (each in order)
        self.capabilities = Capabilities(concurrency=max(1, self.concurrency))
        timeout = httpx.Timeout(float(o.timeout_s), connect=float(o.connect_timeout_s))
        options: dict[str, Any] = {"timeout": timeout, "verify": client_ssl_context(o.tls, root) or True}
        auth = _Auth(dict(o.auth), dict(options)) if o.auth else None
        self._local = threading.local()
        self._clients: list[httpx.Client] = []  # one per delivering thread, all closed by close()
        self._options = {**options, "auth": auth, "headers": _HEADERS}

    def _client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:  # one keep-alive client per delivering thread
            client = self._local.client = httpx.Client(**self._options)
            self._clients.append(client)
        return client

    def _send(self, method: str, url: str, body: bytes | None, headers: dict[str, str] | None = None,
              permanent: frozenset[int] = frozenset()) -> Any:
        try:
            r = self._client().request(method, url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise TransientDeliveryError(f"{self.id}: timed out ({exc.__class__.__name__})") from exc
        except httpx.TransportError as exc:
            raise TransientDeliveryError(f"{self.id}: cannot reach the server ({exc.__class__.__name__})") from exc
        try:
            payload = r.json() if r.content else None
        except ValueError:
            payload = None
        if r.status_code >= 300:
            why = _outcome_text(payload) or r.reason_phrase
            err = (TransientDeliveryError if _transient(r.status_code) and r.status_code not in permanent
                   else PermanentDeliveryError)
            raise err(f"HTTP {r.status_code} from {method} {url.split('?')[0] or '/'}: {why}",
                      response=r.text[:20000])
        return payload

    def deliver(self, message_id: str, body: bytes, journal: OutputLedger) -> str | None:
        if self.claim_submit:
            doc = orjson.loads(body)
            entries = doc.get("entry") or [] if isinstance(doc, dict) else []
            first = entries[0].get("resource") if entries and isinstance(entries[0], dict) else None
            if isinstance(first, dict) and first.get("resourceType") == "Claim":
                return self._submit(doc)
        if self.mode == "requests":
            return self._requests(orjson.loads(body))
        bundle = body
        if self.mode == "batch":
            doc = orjson.loads(body)
            doc["type"] = "batch"
            bundle = orjson.dumps(doc)
        reply = self._send("POST", self.base, bundle)
        return self._read_entries(reply)

    def _submit(self, bundle: dict[str, Any]) -> str:
        """The Claim and the resources it references to the insurer's Claim/$submit, as a collection Bundle;
        the location of the ClaimResponse it answers with. 501 (operation not implemented) is permanent."""
        entries = [{k: v for k, v in e.items() if k in ("fullUrl", "resource")} for e in bundle.get("entry", [])]
        collection = {"resourceType": "Bundle", "type": "collection", "entry": entries}
        reply = self._send("POST", f"{self.base}/Claim/$submit", orjson.dumps(collection),
                           permanent=frozenset({501}))
        answer = reply
        if isinstance(reply, dict) and reply.get("resourceType") == "Bundle":
            answer = next((e.get("resource") for e in reply.get("entry", [])
                           if (e.get("resource") or {}).get("resourceType") == "ClaimResponse"), None)
        if isinstance(answer, dict) and answer.get("resourceType") == "ClaimResponse":
            return f"ClaimResponse/{answer.get('id', '')}".rstrip("/")
        claim = entries[0]["resource"]
        return f"Claim/{claim.get('id', '')}/$submit"

    def _read_entries(self, reply: Any) -> str:
        """Every entry 2xx: their locations; else the worst entry decides (transient before permanent)."""
        if not isinstance(reply, dict) or reply.get("resourceType") != "Bundle":
            raise TransientDeliveryError(f"{self.id}: the server's answer is not a Bundle")
        locations: list[str] = []
        transient: list[str] = []
        permanent: list[tuple[str, Any]] = []
        for n, entry in enumerate(reply.get("entry", [])):
            resp = entry.get("response") or {}
            status = int(str(resp.get("status", "0")).split()[0] or 0)
            if 200 <= status < 300:
                locations.append(str(resp.get("location", "")).split("/_history")[0])
                continue
            why = f"entry {n}: {status} {_outcome_text(resp.get('outcome'))}".strip()
            if _transient(status):
                transient.append(why)
            else:
                permanent.append((why, resp.get("outcome")))
        if transient:
            raise TransientDeliveryError(f"{self.id}: " + "; ".join(transient))
        if permanent:
            outcome = {"resourceType": "OperationOutcome",
                       "issue": [i for _, o in permanent if isinstance(o, dict) for i in o.get("issue", [])]}
            raise PermanentDeliveryError(f"{self.id}: " + "; ".join(w for w, _ in permanent),
                                         response=orjson.dumps(outcome).decode())
        return " ".join(locations)

    def _requests(self, bundle: dict[str, Any]) -> str:
        """One request per entry, in order; urn:uuid references follow the ids the server gives."""
        ids: dict[str, str] = {}
        locations = []
        for entry in bundle.get("entry", []):
            req = entry.get("request") or {}
            resource = _rewrite(entry.get("resource"), ids)
            headers = {"if-none-exist": req["ifNoneExist"]} if req.get("ifNoneExist") else None
            url = f"{self.base}/{req.get('url', '')}"
            reply = self._send(req.get("method", "PUT"), url, orjson.dumps(resource), headers)
            rid = reply.get("id") if isinstance(reply, dict) else None
            rtype = (resource or {}).get("resourceType", "")
            if rid and entry.get("fullUrl"):
                ids[entry["fullUrl"]] = f"{rtype}/{rid}"
            locations.append(f"{rtype}/{rid}" if rid else req.get("url", ""))
        return " ".join(locations)

    def close(self) -> None:
        while self._clients:
            self._clients.pop().close()
        self._local = threading.local()


def _rewrite(node: Any, ids: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: (ids.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, ids))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v, ids) for v in node]
    return node
