"""The operations endpoint of an engine process: Prometheus `/metrics`, health, and the web console.

    GET /metrics        Prometheus text format (engine.metrics)
    GET /health/live    200 while the process runs its loop
    GET /health/ready   200 when the journal answers and the roles are started, else 503 with why

Served by uvicorn on a thread and event loop of their own, never the loop that answers senders:
a flood of requests or a heavy console page delays no ACK (bench/console_intake.py). On `ops.port`
of `config/wasla.yaml` (9464 by default, 127.0.0.1 unless told otherwise: metrics name channels
and destinations, which is no patient data but is still the hospital's business). At most
`MAX_CONNECTIONS` requests at once; beyond, 503 at once. The client address is the socket's peer
(X-Forwarded-For is not trusted: the console throttles logins per address).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from engine import metrics

__all__ = ["MAX_CONNECTIONS", "OpsServer"]

_log = structlog.get_logger("wasla.ops")
MAX_CONNECTIONS = 64


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the engine owns SIGTERM/SIGINT


class OpsServer:
    """The operations endpoint: `/metrics`, `/health/live`, `/health/ready` and, when given, the web
    console. Owns a uvicorn server on a thread and event loop of its own, so no request delays an
    ACK; at most `MAX_CONNECTIONS` requests at once. Leaves SIGTERM and SIGINT to the engine.
    """

    def __init__(self, host: str, port: int, ready: Callable[[], str | None], console: Any = None,
                 roles: tuple[str, ...] = ()) -> None:
        self.host = host
        self.port = port
        self.roles = list(roles)  # told in every health answer: one endpoint per process, per role
        self.ready = ready  # None when ready, else the reason (called on a worker thread)
        self.console = console
        routes: list[BaseRoute] = [
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
            Route("/health/live", self.live, methods=["GET"]),
            Route("/health/ready", self.readiness, methods=["GET"]),
        ]
        if console is not None:  # the web console (engine.console) on the same port
            routes += console.routes()
        self.app = Starlette(routes=routes, middleware=console.middleware() if console is not None else None)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None

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
        """Listen, on a thread of its own; OSError when the port cannot be had (the engine carries on)."""
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_config=None, access_log=False,
                                lifespan="off", server_header=False, proxy_headers=False,
                                limit_concurrency=MAX_CONNECTIONS)
        # Bind here: uvicorn reports a busy port with SystemExit, which would stop the whole engine;
        # an OSError lets the caller carry on without the endpoint.
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(True)
        server = self._server = _Server(config)
        self._thread = threading.Thread(target=self._run, args=(server, sock), name="ops-http", daemon=True)
        self._thread.start()
        while not server.started:
            if not self._thread.is_alive():
                raise OSError(f"ops endpoint could not listen on {self.host}:{self.port}") from self._failed
            await asyncio.sleep(0.01)
        _log.info("ops_listening", host=self.host, port=self.port)

    def _run(self, server: _Server, sock: socket.socket) -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as exc:  # noqa: BLE001 - uvicorn's SystemExit included: the engine goes on without it
            self._failed = exc
            _log.error("ops_stopped", error=exc.__class__.__name__)
        finally:
            sock.close()

    async def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            await asyncio.to_thread(self._thread.join, 10)
        if self.console is not None:
            self.console.close()
