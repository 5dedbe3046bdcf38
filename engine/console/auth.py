"""Signing in and out of the console, and choosing its language: /login, /logout and /lang/{lang}."""

from __future__ import annotations

import asyncio
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from engine.console.hashing import PasswordChecks
from engine.console.pages import LANGS, Pages, to_login
from engine.console.sessions import Sessions
from engine.console.throttle import LoginThrottle
from engine.console.users import Users

__all__ = ["SignIn"]


class SignIn:
    """The login, logout and language pages. A login needs the form's CSRF token; wrong passwords count against
    the name and the client address (`throttle`), a locked one is refused before any hashing, and a check beyond
    the hashing budget (`passwords`) is refused at once. A successful login starts a new session (no fixation);
    a logout closes it on the server, so every copy of the cookie is signed out."""

    def __init__(self, pages: Pages, users: Users, sessions: Sessions, throttle: LoginThrottle,
                 passwords: PasswordChecks) -> None:
        self.pages = pages
        self.users = users
        self.sessions = sessions
        self.throttle = throttle
        self.passwords = passwords

    def routes(self) -> list[Route]:
        return [Route("/login", self.login, methods=["GET", "POST"]), Route("/logout", self.logout, methods=["POST"]),
                Route("/lang/{lang}", self.language)]

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return self.pages.render(request, "login.html", error=False)
        form = await self.pages.form(request)
        if form is None:
            return self.pages.render(request, "login.html", error=True)
        name = str(form.get("user", ""))[:200]
        address = request.client.host if request.client else ""
        wait = self.throttle.wait(name, address)
        if wait > 0:  # refused before any hashing; the answer is slow so that a flood cannot spin the console
            self.throttle.failed(name, address)
            await asyncio.sleep(min(wait, 1.0))
            return self.pages.render(request, "login.html", status_code=429,
                                     headers={"Retry-After": str(int(wait) + 1)}, error=True)
        if self.passwords.busy():
            # the hashing thread is taken, or the second's hashes are spent (a flood from many addresses):
            # no queue builds up, and the engine's CPU stays with the senders
            await asyncio.sleep(0.25)  # nor a spin of instant refusals
            return self.pages.render(request, "login.html", status_code=503, headers={"Retry-After": "1"}, busy=True)
        user = await self.passwords.check(name, str(form.get("password", "")))
        if user is None:
            self.throttle.failed(name, address)
            return self.pages.render(request, "login.html", error=True)
        self.throttle.succeeded(name)
        lang = request.session.get("lang", "fr")
        request.session.clear()  # a new session at login: no fixation
        sid = self.sessions.open(user.name, self.users.stamp(user.name) or "")
        request.session.update({"sid": sid, "lang": lang, "csrf": secrets.token_urlsafe(24)})
        return RedirectResponse("/", status_code=303)

    async def logout(self, request: Request) -> Response:
        if await self.pages.form(request) is not None:
            self.sessions.close(request.session.get("sid"))  # every copy of the cookie is signed out
            request.session.clear()
        return to_login()

    async def language(self, request: Request) -> Response:
        lang = request.path_params["lang"]
        if lang in LANGS:
            request.session["lang"] = lang
        return RedirectResponse(_local_path(request.headers.get("referer", "")), status_code=303)


def _local_path(referer: str) -> str:
    """Where to send the browser back to: the path and query of `referer` only (a relative redirect,
    whatever host the header or the request named), or / when that is not a plain local path."""
    parts = urlsplit(referer)
    path = parts.path or "/"
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path + (f"?{parts.query}" if parts.query else "")
