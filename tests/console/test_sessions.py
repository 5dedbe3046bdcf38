"""The console's session cookie: HttpOnly and SameSite=Strict always, Secure when served over HTTPS."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from engine.config import load_config
from engine.console import Console
from engine.console.users import Users
from engine.store import Journal
from tests.support import make_project


def _login_cookie(project: Path) -> str:
    """Log in through the form (its CSRF token included) and return the session's Set-Cookie header."""
    config = load_config(project / "config")
    Users(project / "config" / "users.yaml").add("ops.nuit", "operator", "correct-horse-battery")
    journal = Journal(f"sqlite:///{project}/var/wasla.db")
    try:
        console = Console(config, journal, depths=dict)
        app = Starlette(routes=console.routes(), middleware=console.middleware())

        async def login() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="https://console.example") as client:
                csrf = re.search(r'name="csrf" value="([^"]+)"', (await client.get("/login")).text)
                assert csrf is not None
                return await client.post("/login", data={"user": "ops.nuit", "password": "correct-horse-battery",
                                                          "csrf": csrf.group(1)})

        answer = asyncio.run(login())
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        return answer.headers["set-cookie"]
    finally:
        journal.close()


@pytest.mark.parametrize("secure", [False, True])
def test_session_cookie_is_secure_when_configured(tmp_path: Path, secure: bool) -> None:
    project = make_project(tmp_path)
    if secure:
        main = project / "config" / "wasla.yaml"
        main.write_text(main.read_text().replace("ops:", "ops:\n  secure_cookies: true", 1))
    cookie = _login_cookie(project).lower()
    assert cookie.startswith("wasla_session=") and "httponly" in cookie and "samesite=strict" in cookie
    assert ("; secure" in cookie) is secure
