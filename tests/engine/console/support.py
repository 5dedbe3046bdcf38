"""The console served for real (engine.ops on its own thread, a real socket) over a project's config."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from engine.config import load_config
from engine.console import Console
from engine.ops import OpsServer
from engine.store import Journal
from tests.support import free_port

PASSWORD = "correct-horse-battery"


@contextmanager
def served_console(project: Path, store_url: str | None = None) -> Iterator[tuple[str, Console, Journal]]:
    """(base URL, console, journal) of the console of `project`, on the journal at `store_url`."""
    journal = Journal(store_url or f"sqlite:///{project}/var/wasla.db")
    console = Console(load_config(project / "config"), journal, depths=dict)
    ops = OpsServer("127.0.0.1", free_port(), lambda: None, console)
    asyncio.run(ops.start())
    try:
        yield f"http://127.0.0.1:{ops.port}", console, journal
    finally:
        asyncio.run(ops.stop())
        journal.close()


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, "no CSRF token on the page"
    return found.group(1)


def login(client: httpx.Client, user: str, password: str = PASSWORD) -> httpx.Response:
    """Post the login form with its CSRF token; the answer (303 to / when signed in)."""
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"user": user, "password": password, "csrf": token})
