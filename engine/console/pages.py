"""What every console page shares: who is signed in, the session's CSRF token, a posted form checked against it,
and a template rendered in the session's language (French by default, English, Arabic). The `signed_in` and
`signed_in_api` decorators let a page run for a signed-in user only."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from ruamel.yaml import YAML
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from engine.console.sessions import Sessions
from engine.console.users import User, Users

__all__ = ["LANGS", "Pages", "signed_in", "signed_in_api", "to_login"]

_HERE = Path(__file__).parent
LANGS = ("fr", "en", "ar")


def _strings() -> dict[str, dict[str, str]]:
    yaml = YAML(typ="safe")
    return {lang: yaml.load((_HERE / "i18n" / f"{lang}.yaml").read_text(encoding="utf-8")) for lang in LANGS}


def to_login() -> Response:
    """To the login page (303)."""
    return RedirectResponse("/login", status_code=303)  # relative: never built from the Host header


class Pages:
    """The console's page toolkit, shared by every page: it owns the templates and their strings in each
    language. It reads the signed-in user from the session (a revoked session, a removed user or a changed
    password counts at once), hands out the session's CSRF token and accepts a posted form only with it."""

    def __init__(self, users: Users, sessions: Sessions) -> None:
        self.users = users
        self.sessions = sessions
        self.strings = _strings()
        self.templates = Jinja2Templates(directory=str(_HERE / "templates"))

    def user(self, request: Request) -> User | None:
        """The session's user; None when nobody is signed in, or the session no longer holds."""
        sid = request.session.get("sid")
        found = self.sessions.get(sid)
        if found is None:
            return None
        role = self.users.role_of(found.user)  # a removed user or changed role counts at once
        if role is None or self.users.stamp(found.user) != found.stamp:  # removed, or a new password
            self.sessions.close(sid)
            return None
        return User(found.user, role)

    def csrf(self, request: Request) -> str:
        """The session's CSRF token, made on first use."""
        token = request.session.get("csrf")
        if not token:
            token = request.session["csrf"] = secrets.token_urlsafe(24)
        return str(token)

    async def form(self, request: Request) -> FormData | None:
        """The posted form if its CSRF token is this session's, else None."""
        form = await request.form()
        expected = request.session.get("csrf", "")
        return form if expected and hmac.compare_digest(str(form.get("csrf", "")), expected) else None

    def render(self, request: Request, template: str, status_code: int = 200,
               headers: dict[str, str] | None = None, **context: object) -> Response:
        """`template` in the session's language, with its user, CSRF token and flash message (shown once)."""
        lang = request.session.get("lang", "fr")
        flash = request.session.pop("flash", None)
        return self.templates.TemplateResponse(request, template, {
            "lang": lang, "t": self.strings[lang], "user": self.user(request), "csrf": self.csrf(request),
            "flash": self.strings[lang].get(flash, "") if flash else "", **context},
            status_code=status_code, headers=headers)


class _Host(Protocol):
    """A class of console pages: it reaches the toolkit through `pages`."""

    @property
    def pages(self) -> Pages: ...


_H = TypeVar("_H", bound=_Host)
_P = ParamSpec("_P")
_ForUser = Callable[Concatenate[_H, Request, User, _P], Awaitable[Response]]
_Endpoint = Callable[Concatenate[_H, Request, _P], Awaitable[Response]]


def signed_in(page: _ForUser[_H, _P]) -> _Endpoint[_H, _P]:
    """A page that runs only for a signed-in user, who is passed after the request; anyone else is
    redirected to /login (303)."""
    return _requiring_user(page, to_login)


def signed_in_api(page: _ForUser[_H, _P]) -> _Endpoint[_H, _P]:
    """A JSON endpoint that runs only for a signed-in user; anyone else gets 401."""
    return _requiring_user(page, lambda: JSONResponse({"error": "login"}, status_code=401))


def _requiring_user(page: _ForUser[_H, _P], denied: Callable[[], Response]) -> _Endpoint[_H, _P]:
    """The signed-in check, written once: the session's user (Pages.user: revoked sessions, removed users and
    changed passwords count at once), else `denied()`. Roles are checked by the page."""
    @wraps(page)
    async def checked(self: _H, request: Request, /, *args: _P.args, **extra: _P.kwargs) -> Response:
        user = self.pages.user(request)
        if user is None:
            return denied()
        return await page(self, request, user, *args, **extra)

    return checked
