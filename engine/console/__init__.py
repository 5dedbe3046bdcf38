"""The web console: dashboard, message log and message page, replay, claims; French, English, Arabic (RTL).

Served with /metrics on the ops port of an engine process (engine.ops), on a thread and event loop
of its own: nothing the console does waits in front of an ACK. Local users from `config/users.yaml`
(`wasla user add`), roles viewer < operator < admin. The cookie is signed (Starlette's
SessionMiddleware: HttpOnly, SameSite=Strict, 8 hours, Secure with `ops.secure_cookies`) and holds a
session id the server can revoke (engine.console.sessions: signing out, removing the user or
changing their password ends it). Every form carries a per-session CSRF token. Wrong passwords lock
the name and the client address for a while (engine.console.throttle); passwords are hashed on one
thread at a time, and a try beyond that is refused at once. Every answer carries the security
headers of engine.console.headers. Journal reads and page building run off the console's loop.

A message page shows the first 64 KB of the raw message and of each FHIR body, with a link to
download the whole. Viewing a message's content writes one audit record before the page is sent;
a download or a replay writes one too.

`Console` assembles the pages, one module per concern: engine.console.pages (what every page shares:
the signed-in check, CSRF, rendering), auth (login, logout, language), hashing (the password-check
budget), dashboard, messages (log, message page, downloads, replay), dead (dead letters),
channels (the channel page and its dry run) and claims (the claims list and page, close and release).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from engine.config import Config
from engine.console.auth import SignIn
from engine.console.channels import Channels
from engine.console.claims import Claims
from engine.console.dashboard import Dashboard
from engine.console.dead import DeadLetters
from engine.console.hashing import HASHING_MAX, PasswordChecks
from engine.console.headers import SecurityHeaders
from engine.console.messages import PAGE_BYTES, Messages
from engine.console.pages import Pages
from engine.console.sessions import Sessions
from engine.console.throttle import LoginThrottle
from engine.console.users import Users
from engine.formats import Mappings
from engine.store import Journal

__all__ = ["HASHING_MAX", "PAGE_BYTES", "Console"]

_HERE = Path(__file__).parent


class Console:
    """The console's pages and their sessions: it owns the users file, the signed-in sessions, the login
    throttle and the password-hashing thread, gives each page class what it needs, and serves their routes
    behind the security headers and the signed session cookie. Every page but the login runs for a signed-in
    user only (`signed_in`, engine.console.pages); each view of a message's content, download and replay is
    audited before it is answered; a change needs the operator role and the session's CSRF token."""

    def __init__(self, config: Config, journal: Journal, depths: Callable[[], dict[str, int]],
                 converter: Mappings | None = None) -> None:
        self.config = config
        self.journal = journal
        self.users = Users(config.config_dir / "users.yaml")
        self.secret = journal.keys.meta_secret("console_session_secret", "WASLA_CONSOLE_SECRET").decode()
        self.sessions = Sessions(max_age_s=8 * 3600)
        self.pages = Pages(self.users, self.sessions)
        self.throttle = LoginThrottle()
        self.passwords = PasswordChecks(self.users)
        self.sign_in = SignIn(self.pages, self.users, self.sessions, self.throttle, self.passwords)
        self.dashboard = Dashboard(self.pages, config, journal, depths)
        self.messages = Messages(self.pages, config, journal, converter)
        self.dead = DeadLetters(self.pages, config, journal)
        self.channels = Channels(self.pages, config, converter)
        self.claims = Claims(self.pages, journal)

    def middleware(self) -> list[Middleware]:
        return [Middleware(SecurityHeaders),
                Middleware(SessionMiddleware, secret_key=self.secret, session_cookie="wasla_session",
                           max_age=8 * 3600, same_site="strict",
                           https_only=self.config.ops.secure_cookies)]

    def close(self) -> None:
        """Stop the password-hashing thread."""
        self.passwords.close()

    def routes(self) -> list[BaseRoute]:
        return [
            *self.dashboard.routes(), *self.sign_in.routes(), *self.messages.routes(), *self.dead.routes(),
            *self.channels.routes(), *self.claims.routes(),
            Mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static"),
        ]
