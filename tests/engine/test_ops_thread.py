"""The ops endpoint (metrics, health, console) runs on a thread and event loop of its own (engine.ops):
nothing it does can hold the loop that answers senders, and a busy engine loop does not stop it (issue 23)."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from engine.ops import OpsServer
from tests.support import free_port


class _Slow:
    """A console stand-in whose one page takes its time with a blocking call, as a heavy page would."""

    def __init__(self) -> None:
        self.served_on: list[int] = []

    def routes(self) -> list[BaseRoute]:
        return [Route("/slow", self.slow)]

    def middleware(self) -> list[Middleware]:
        return []

    def close(self) -> None:
        pass

    async def slow(self, request: Request) -> Response:
        self.served_on.append(threading.get_ident())
        time.sleep(0.5)  # blocks whichever loop serves it
        return JSONResponse({"ok": True})


class TestOwnLoop:
    def test_a_blocked_engine_loop_still_gets_answers_and_a_slow_page_blocks_no_engine_loop(self) -> None:
        """While the caller's loop is blocked in a synchronous request, the endpoint answers it (served on
        another thread); while a page blocks the endpoint's loop, the caller's loop keeps ticking."""
        console = _Slow()
        port = free_port()

        async def scenario() -> tuple[int, int, int]:
            ops = OpsServer("127.0.0.1", port, lambda: None, console)
            await ops.start()
            try:
                # blocking the engine's loop on purpose: on the old design this request could never be served
                live = httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=10).status_code
                ticks = 0

                async def tick() -> None:
                    nonlocal ticks
                    while True:
                        await asyncio.sleep(0.01)
                        ticks += 1

                ticker = asyncio.create_task(tick())
                async with httpx.AsyncClient() as client:
                    slow = (await client.get(f"http://127.0.0.1:{port}/slow", timeout=10)).status_code
                ticker.cancel()
                return live, slow, ticks
            finally:
                await ops.stop()

        live, slow, ticks = asyncio.run(scenario())
        assert live == 200 and slow == 200
        assert console.served_on and console.served_on[0] != threading.get_ident()
        assert ticks >= 5  # the loop ran during the half second the page blocked its own loop

    def test_a_busy_port_is_an_oserror_and_stop_frees_it(self) -> None:
        """A port already taken raises OSError (the engine carries on without the endpoint); after stop
        the port can be had again."""
        port = free_port()

        async def scenario() -> None:
            first = OpsServer("127.0.0.1", port, lambda: None)
            await first.start()
            second = OpsServer("127.0.0.1", port, lambda: None)
            try:
                await second.start()
            except OSError:
                pass
            else:
                raise AssertionError("a second server listened on a taken port")
            finally:
                await first.stop()
            again = OpsServer("127.0.0.1", port, lambda: None)
            await again.start()
            await again.stop()

        asyncio.run(scenario())
