"""The console's dead letters: per destination the messages whose delivery gave up, replayed in bulk, and the
local codes holding parked messages (/dead)."""

from __future__ import annotations

import asyncio
from datetime import datetime

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from engine.config import Config
from engine.console.pages import Pages, signed_in
from engine.console.users import User
from engine.store import Journal, MessageRow

__all__ = ["DeadLetters"]

_Unmapped = tuple[str, str, str, int, datetime, datetime]  # code map, local code, sender, messages, first, last


class DeadLetters:
    """The dead-letter page and its bulk replay, for signed-in users. A replay needs the operator role, the
    session's CSRF token and a configured destination; it replays only messages that are dead there now, and
    is audited. The journal is read on a worker thread, metadata only: no body is read for the list."""

    def __init__(self, pages: Pages, config: Config, journal: Journal) -> None:
        self.pages = pages
        self.config = config
        self.journal = journal

    def routes(self) -> list[Route]:
        return [Route("/dead", self.dead), Route("/dead/{destination}/replay", self.dead_replay, methods=["POST"])]

    @signed_in
    async def dead(self, request: Request, user: User) -> Response:
        """Dead letters per destination (bulk replay), and the local codes holding parked messages."""
        def read() -> tuple[list[tuple[str, list[MessageRow]]], list[_Unmapped]]:
            groups = [(dest, self.journal.messages.search(destination=dest, output_status="dead", limit=500))
                      for dest in self.config.destinations]  # metadata only: no body is read for a list
            return groups, self.journal.parked.codes()

        groups, unmapped = await asyncio.to_thread(read)
        return self.pages.render(request, "dead.html", groups=groups, unmapped=unmapped)

    @signed_in
    async def dead_replay(self, request: Request, user: User) -> Response:
        dest = request.path_params["destination"]
        form = await self.pages.form(request)
        if form is None or not user.can("operator") or dest not in self.config.destinations:
            request.session["flash"] = "forbidden"
            return RedirectResponse("/dead", status_code=303)
        client = request.client.host if request.client else ""

        def request_replays() -> bool:
            dead = set(self.journal.outputs.dead_letters(dest))
            chosen = sorted(dead) if form.get("scope") == "all" else [str(v) for v in form.getlist("id") if v in dead]
            if not chosen:
                return False
            self.journal.replays.request(chosen, "deliver", dest, user.name)
            self.journal.audit.record(user.name, "replay", chosen, client, {"mode": "deliver", "destination": dest,
                                                                      "via": "console"})
            return True

        if await asyncio.to_thread(request_replays):
            request.session["flash"] = "replays_requested"
        return RedirectResponse("/dead", status_code=303)
