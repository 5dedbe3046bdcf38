"""`Idempotency-Key` on the REST channel: a retry gets the first answer again, not a second message.

The key is claimed in the journal before the message is received (engine.store.idempotency), so
concurrent requests with one key make one message, and a restart keeps it. A request that finds the
key held by one still in progress waits for its answer a few seconds, then gets 409 with Retry-After.
The same key with another body is 422. A key whose request died is taken over after its lease; if
that request's message reached the journal, the answer names it instead of receiving it again.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor

import orjson
import structlog
from starlette.responses import Response

from channels.rest_http import json_response, problem
from engine.connectors.ports import Answer, Claimed, IdempotencyLedger, Mismatch, State
from engine.connectors.toolkit import error_fields
from engine.errors import StoreError

__all__ = ["KEY_MAX", "IdempotencyKeys"]

_log = structlog.get_logger("wasla.rest")
KEY_MAX = 255  # characters of an Idempotency-Key
_WAIT_S = 5.0  # how long a request waits for the answer of another holding its key


class IdempotencyKeys:
    """The Idempotency-Keys of one REST channel, kept in the journal's ledger `keys`.

    Owns the claim, complete and release steps of a keyed request (ledger calls made on `executor`).
    Guarantees: one message per (channel, client, key): `once` receives a body only while it holds the
    key, records the answer (a 5xx is not kept: the key is released and a retry tries again) and
    releases the key when the request fails or is cancelled; a request that finds the key answered
    gets that answer again.
    """

    def __init__(self, channel: str, keys: IdempotencyLedger, executor: Executor) -> None:
        self.channel = channel
        self.keys = keys
        self.executor = executor

    async def once(self, client: str, key: str, digest: str, raw: bytes,
                   receive: Callable[[], Awaitable[Response]]) -> Response:
        """One message per key (engine.store.idempotency): claim the key in the journal, then receive and
        record the answer; a request that finds the key answered gets that answer (`_claim`)."""
        loop, channel = asyncio.get_running_loop(), self.channel
        try:
            claim = await self._claim(client, key, digest)
        except StoreError as exc:
            _log.error("idempotency_claim_failed", channel=channel, **error_fields(exc))
            return problem(503, "unavailable", "Not accepted", "the journal is unavailable; nothing was received",
                           headers={"Retry-After": "5"})
        if isinstance(claim, Response):
            return claim
        try:
            response = None
            if claim.since is not None:  # a request that died held it: did its message reach the journal?
                mid = await loop.run_in_executor(self.executor, self.keys.journaled_since, channel,
                                                 hashlib.sha256(raw).hexdigest(), claim.since)
                if mid is not None:
                    response = json_response({"id": mid, "status_url": f"/messages/{mid}"}, 202,
                                             {"Location": f"/messages/{mid}"})
            if response is None:
                response = await receive()
        except BaseException:
            await asyncio.shield(loop.run_in_executor(self.executor, self._release, client, key, claim.claim))
            raise
        if response.status_code >= 500:  # not an answer to keep: a retry tries again
            await loop.run_in_executor(self.executor, self._release, client, key, claim.claim)
            return response
        body = bytes(response.body)
        mid = _message_id(body)
        try:
            kept = await loop.run_in_executor(self.executor, self.keys.complete, channel, client, key, claim.claim,
                                              response.status_code, body, mid)
        except StoreError as exc:  # the answer stands; after the lease a retry finds the message (module doc)
            _log.warning("idempotency_complete_failed", channel=channel, **error_fields(exc))
        else:
            if not kept:
                _log.warning("idempotency_claim_lost", channel=channel, message_id=mid)
        return response

    async def _claim(self, client: str, key: str, digest: str) -> Claimed | Response:
        """The key for this request, or the answer it gets instead: the first answer again (same status and
        body), 422 for another body, or, when another request still holds the key after `_WAIT_S`, 409."""
        loop, channel = asyncio.get_running_loop(), self.channel
        deadline = time.monotonic() + _WAIT_S
        state: State | None = await loop.run_in_executor(self.executor, self.keys.claim, channel, client, key, digest)
        while not isinstance(state, Claimed):
            if isinstance(state, Answer):
                return _replay(state)
            if isinstance(state, Mismatch):
                return problem(422, "idempotency-key-reused", "Idempotency-Key reused with another body",
                               "a key names one request; use a new key for a new message")
            if time.monotonic() >= deadline:
                return problem(409, "idempotency-key-in-progress", "A request with this Idempotency-Key is in progress",
                               "retry in a moment: the first request's answer will be returned",
                               headers={"Retry-After": "1"})
            await asyncio.sleep(0.05)
            state = await loop.run_in_executor(self.executor, self.keys.state, channel, client, key, digest)
            if state is None:  # released, expired or stale: claim it
                state = await loop.run_in_executor(self.executor, self.keys.claim, channel, client, key, digest)
        return state

    def _release(self, client: str, key: str, claim: str) -> None:
        try:
            self.keys.release(self.channel, client, key, claim)
        except StoreError as exc:  # the claim goes stale and is taken over after its lease
            _log.warning("idempotency_release_failed", channel=self.channel, **error_fields(exc))


def _message_id(answer: bytes) -> str:
    """The message an answer names (`id` of a 202, `message_id` of a problem), if any."""
    try:
        doc = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return ""
    return str(doc.get("id") or doc.get("message_id") or "") if isinstance(doc, dict) else ""


def _replay(answer: Answer) -> Response:
    """The first answer to a key, again: same status, same body."""
    headers = {"Idempotent-Replayed": "true"}
    if answer.status == 202 and answer.message_id:
        headers["Location"] = f"/messages/{answer.message_id}"
    media = "application/json" if answer.status < 400 else "application/problem+json"
    return Response(answer.body, answer.status, headers=headers, media_type=media)
