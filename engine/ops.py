"""The operations endpoint of an engine process: Prometheus `/metrics`, health, and the web console.

    GET /metrics        Prometheus text format (engine.metrics)
    GET /health/live    200 while the process runs its loop
    GET /health/ready   200 when the journal answers and the roles are started, else 503 with why

Served by uvicorn on the engine's own event loop (as the REST channel is), on `ops.port` of
`config/wasla.yaml` (9464 by default, 127.0.0.1 unless told otherwise: metrics name channels
and destinations, which is no patient data but is still the hospital's business).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from engine import metrics

__all__ = ["OpsServer"]

_log = structlog.get_logger("wasla.ops")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the engine owns SIGTERM/SIGINT


class OpsServer:
    def __init__(self, host: str, port: int, ready: Callable[[], str | None], console: Any = None,
                 roles: tuple[str, ...] = ()) -> None:
        self.host = host
        self.port = port
        self.roles = list(roles)  # told in every health answer: one endpoint per process, per role
        self.ready = ready  # None when ready, else the reason
        routes: list[BaseRoute] = [
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
            Route("/health/live", self.live, methods=["GET"]),
            Route("/health/ready", self.readiness, methods=["GET"]),
        ]
        if console is not None:  # the web console (engine.console) on the same port
            routes += console.routes()
        self.app = Starlette(routes=routes, middleware=console.middleware() if console is not None else None)
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def metrics_endpoint(self, request: Request) -> Response:
        body = await asyncio.get_running_loop().run_in_executor(None, metrics.exposition)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def live(self, request: Request) -> Response:
        return JSONResponse({"status": "live", "roles": self.roles})

    async def readiness(self, request: Request) -> Response:
        why = await asyncio.get_running_loop().run_in_executor(None, self.ready)
        if why:
            return JSONResponse({"status": "not ready", "reason": why, "roles": self.roles}, status_code=503)
        return JSONResponse({"status": "ready", "roles": self.roles})

    async def start(self) -> None:
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_config=None, access_log=False,
                                lifespan="off", server_header=False)
        # Bind here: uvicorn reports a busy port with SystemExit, which an asyncio task cannot contain
        # (it would stop the whole engine); an OSError lets the caller carry on without the endpoint.
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(True)
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise OSError(f"ops endpoint could not listen on {self.host}:{self.port}")
            await asyncio.sleep(0.01)
        _log.info("ops_listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
