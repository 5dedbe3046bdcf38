"""The console's dashboard: the page (/) and its data (/api/dashboard), counts of the last 24 hours per channel,
what waits or failed per destination, queue depths and a sparkline of what each channel received."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine import metrics
from engine.config import Config
from engine.console.pages import Pages, signed_in, signed_in_api
from engine.console.users import User
from engine.store import Journal
from engine.types import Status

__all__ = ["Dashboard"]

CHANNEL_STATUSES = ("received", "transformed", "filtered", "delivered", "failed", "parked")
DESTINATION_STATUSES = ("delivered", "retrying", "waiting", "dead")


class Dashboard:
    """The dashboard page and its JSON, for signed-in users. It owns the received-per-channel trend (a sample
    at most every 5 s, the last 60 kept), read through the journal's time index, never a scan; the journal
    is read on a worker thread, off the console's loop."""

    def __init__(self, pages: Pages, config: Config, journal: Journal, depths: Callable[[], dict[str, int]]) -> None:
        self.pages = pages
        self.config = config
        self.journal = journal
        self.depths = depths
        self._trend: deque[tuple[float, dict[str, int]]] = deque(maxlen=60)  # (time, received per channel)
        self._trend_at = time.time()

    def routes(self) -> list[Route]:
        return [Route("/", self.dashboard), Route("/api/dashboard", self.dashboard_data)]

    @signed_in
    async def dashboard(self, request: Request, user: User) -> Response:
        return self.pages.render(request, "dashboard.html", channel_statuses=CHANNEL_STATUSES,
                                 destination_statuses=DESTINATION_STATUSES)

    @signed_in_api
    async def dashboard_data(self, request: Request, user: User) -> Response:
        return JSONResponse(await asyncio.to_thread(self.journal_dashboard))

    def journal_dashboard(self) -> dict[str, Any]:
        """Counts of the last 24 hours per channel; what waits or failed per destination; queue depths."""
        since = time.time() - 86400
        counts = self.journal.messages.status_counts(since)
        depths = self.depths()
        delivered = self.journal.outputs.delivered_since(list(self.config.destinations), since)
        circuits = metrics.open_circuits()
        channels: list[dict[str, Any]] = []
        c: dict[str, Any]
        for ch in self.config.channels:
            c = dict(counts.get(ch.id, {}))
            c["received"] = sum(c.values())
            errors = self.journal.messages.search(channel=ch.id, status=Status.FAILED, limit=1)
            channels.append({"id": ch.id, "counts": c, "alert": bool(c.get("failed") or c.get("parked")),
                             "last_error": errors[0].reason[:200] if errors else ""})
        waiting = self.journal.outputs.counts()
        destinations = []
        for dest in self.config.destinations:
            c = {"delivered": delivered.get(dest, 0), **waiting.get(dest, {})}
            queued = sum(n for q, n in depths.items() if q.startswith(f"wasla.deliver.{dest}."))
            destinations.append({"id": dest, "counts": c, "queued": queued,
                                 "alert": bool(c.get("dead")) or dest in circuits})
        trend = self._sample_trend()
        for c in channels:
            c["trend"] = [n.get(c["id"], 0) for _, n in trend]
        return {"channels": channels, "destinations": destinations}

    def _sample_trend(self) -> list[tuple[float, dict[str, int]]]:
        """Messages received per channel in each interval since the last sample (at least 5 s apart):
        the dashboard's sparkline, read through the time index, never a scan."""
        now = time.time()
        if now - self._trend_at >= 5:
            self._trend.append((now, self.journal.messages.received_since(self._trend_at)))
            self._trend_at = now
        return list(self._trend)
