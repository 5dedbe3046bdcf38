"""The console's messages: the message log with its search (/messages), a message's page (the head of its raw
body laid out by its format, each FHIR body, its events and lineage), the whole bodies as streamed downloads, and
a message's replay through the transform."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from engine.config import ChannelConfig, Config
from engine.console.pages import Pages, signed_in
from engine.console.users import User
from engine.formats import Format, Formats, Mappings
from engine.store import Journal, MessageRow, mapping_warnings
from engine.types import Status

__all__ = ["PAGE_BYTES", "Messages"]

PAGE_BYTES = 64 * 1024  # of the raw message and of each FHIR body on a message page; the rest is downloaded
PRETTY_MAX_BYTES = 1 << 20  # a FHIR body larger than this is shown as stored, not re-indented
LINEAGE_MAX_BYTES = 1 << 20  # larger messages: no lineage on the page (wasla convert --explain)
NOT_READ_MAX = 200  # fields named as not read on a page; the rest: wasla convert --explain


class Messages:
    """The message log, the message page, its downloads and its replay, for signed-in users. A page shows at
    most PAGE_BYTES of the raw message and of each FHIR body, and never inflates a large body whole; each view
    of a message's content (page or download) is audited before any of it is sent. A replay needs the operator
    role and the session's CSRF token, and is audited. The journal is read on a worker thread."""

    def __init__(self, pages: Pages, config: Config, journal: Journal, converter: Mappings | None) -> None:
        self.pages = pages
        self.config = config
        self.journal = journal
        self.converter = converter  # lineage needs the installation's mappings
        self.formats = Formats(converter)  # how a message page lays out and explains each input format

    def routes(self) -> list[Route]:
        return [Route("/messages", self.messages), Route("/messages/{message_id}", self.message),
                Route("/messages/{message_id}/raw", self.download_raw),
                Route("/messages/{message_id}/fhir/{destination}", self.download_fhir),
                Route("/messages/{message_id}/replay", self.replay, methods=["POST"])]

    @signed_in
    async def messages(self, request: Request, user: User) -> Response:
        q = {k: request.query_params.get(k) or None for k in ("control_id", "channel", "status")}
        rows = await asyncio.to_thread(lambda: self.journal.messages.search(**q, limit=100))  # type: ignore[arg-type]
        statuses = (*Status.UNFINISHED, Status.DELIVERED, Status.FAILED, Status.FILTERED, Status.PARKED)
        return self.pages.render(request, "messages.html", rows=rows, q=q, statuses=statuses)

    @signed_in
    async def message(self, request: Request, user: User) -> Response:
        client = request.client.host if request.client else ""
        view = await asyncio.to_thread(self._message_view, request.path_params["message_id"], user, client)
        if view is None:
            return Response("not found", status_code=404)
        return self.pages.render(request, "message.html", **view)

    def _message_view(self, mid: str, user: User, client: str) -> dict[str, Any] | None:
        """The message page's content, read and laid out on a worker thread: at most PAGE_BYTES of each body."""
        row = self.journal.messages.head(mid, LINEAGE_MAX_BYTES + 1)  # a large body is not inflated whole
        if row is None:
            return None
        self.journal.audit.record(user.name, "view", [mid], client, {"via": "console"})  # before any content is sent
        channel = self._channel_of(row.channel)  # its encoding override: shown as it was converted
        fmt = self.formats.of(row.message_type)
        layout = fmt.layout(_head(row.raw), channel)
        segments, raw_text = layout.segments, layout.text
        outputs = []
        for dest in self.journal.outputs.destinations(mid):
            out = self.journal.outputs.get(mid, dest, PRETTY_MAX_BYTES + 1)  # a large body is not inflated whole
            if out is not None:
                body, more = _fhir_head(out.body)
                size = len(out.body) if len(out.body) <= PRETTY_MAX_BYTES else None  # None: over PRETTY_MAX_BYTES
                outputs.append({"destination": dest, "status": out.status, "body": body, "size": size, "more": more})
        events = [{**ev, "summary": _summary(ev["detail"])} for ev in self.journal.messages.events(mid)]
        whole = len(row.raw) <= LINEAGE_MAX_BYTES  # then row.raw is the whole body
        lineage, not_read = self._lineage(row, fmt, channel, events) if whole else ([], [])
        return {"row": row, "segments": segments, "raw_text": raw_text, "raw_more": len(row.raw) > PAGE_BYTES,
                "page_bytes": PAGE_BYTES, "pretty_max": PRETTY_MAX_BYTES, "no_lineage": not whole, "outputs": outputs,
                "events": events, "lineage": lineage, "not_read": not_read, "warnings": mapping_warnings(events)}

    @signed_in
    async def download_raw(self, request: Request, user: User) -> Response:
        """The whole raw message, streamed as a download (audited like the page)."""
        mid = request.path_params["message_id"]
        client = request.client.host if request.client else ""

        def read() -> bytes | None:
            row = self.journal.messages.get(mid)
            if row is None or not row.raw:
                return None
            self.journal.audit.record(user.name, "view-raw", [mid], client, {"via": "console"})
            return row.raw

        body = await asyncio.to_thread(read)
        if body is None:
            return Response("not found", status_code=404)
        return _download(body, "application/hl7-v2", f"{mid}.hl7")

    @signed_in
    async def download_fhir(self, request: Request, user: User) -> Response:
        """One destination's whole FHIR body, streamed as a download (audited like the page)."""
        mid, dest = request.path_params["message_id"], request.path_params["destination"]
        client = request.client.host if request.client else ""

        def read() -> bytes | None:
            out = self.journal.outputs.get(mid, dest)
            if out is None or not out.body:
                return None
            self.journal.audit.record(user.name, "view-fhir", [mid], client, {"via": "console", "destination": dest})
            return out.body

        body = await asyncio.to_thread(read)
        if body is None:
            return Response("not found", status_code=404)
        return _download(body, "application/fhir+json", f"{mid}-{dest}.json")

    def _lineage(self, row: MessageRow, fmt: Format, channel: ChannelConfig | None,
                 events: list[dict[str, Any]]) -> tuple[list[dict[str, str]], list[str]]:
        """What `wasla convert --explain` shows: each FHIR element and the source fields it came from."""
        mapping = next((ev["detail"].get("mapping") for ev in reversed(events)
                        if ev["stage"] == "transform" and ev["detail"].get("mapping")), None)
        if self.converter is None or not mapping or not row.raw:
            return [], []
        found = fmt.lineage(row.raw, channel, mapping, row.received_at, NOT_READ_MAX)
        if found is None:
            return [], []
        return found.rows, found.not_read + (["…"] if found.not_read_total > NOT_READ_MAX else [])

    def _channel_of(self, channel_id: str) -> ChannelConfig | None:
        """The channel's configuration; None when it is not configured any more."""
        try:
            return self.config.channel(channel_id)
        except KeyError:
            return None

    @signed_in
    async def replay(self, request: Request, user: User) -> Response:
        mid = request.path_params["message_id"]
        form = await self.pages.form(request)
        if form is None or not user.can("operator"):
            request.session["flash"] = "forbidden"
            return RedirectResponse(f"/messages/{mid}", status_code=303)
        client = request.client.host if request.client else ""

        def request_replay() -> bool:
            if not self.journal.messages.present([mid]):
                return False
            self.journal.replays.request([mid], "transform", "", user.name)
            self.journal.audit.record(user.name, "replay", [mid], client, {"mode": "transform", "via": "console"})
            return True

        if await asyncio.to_thread(request_replay):
            request.session["flash"] = "replay_requested"
        return RedirectResponse(f"/messages/{mid}", status_code=303)


def _head(raw: bytes) -> bytes:
    """The first PAGE_BYTES of a raw message, cut after the last whole segment when there is one."""
    if len(raw) <= PAGE_BYTES:
        return raw
    head = raw[:PAGE_BYTES]
    cut = head.rfind(b"\r")
    return head[:cut + 1] if cut > 0 else head


def _fhir_head(body: bytes) -> tuple[str, bool]:
    """A FHIR body for the page: indented when it is small enough to re-indent, then its first PAGE_BYTES;
    and whether there is more of it than that."""
    if not body:
        return "", False
    shown = body
    if len(body) <= PRETTY_MAX_BYTES:
        try:
            shown = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)
        except orjson.JSONDecodeError:
            shown = body
    return shown[:PAGE_BYTES].decode("utf-8", "replace"), len(shown) > PAGE_BYTES


def _download(body: bytes, media_type: str, filename: str) -> Response:
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), PAGE_BYTES):
            yield body[start:start + PAGE_BYTES]

    return StreamingResponse(chunks(), media_type=media_type, headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "Content-Length": str(len(body))})


def _summary(detail: dict[str, Any]) -> str:
    keep = {k: v for k, v in detail.items() if k in ("destination", "reason", "location", "mapping", "round",
                                                     "retry_in_s", "behind", "mode", "by")}
    return orjson.dumps(keep).decode()[:300] if keep else ""
