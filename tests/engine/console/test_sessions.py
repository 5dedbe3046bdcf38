"""The console's sessions: the cookie (HttpOnly and SameSite=Strict always, Secure over HTTPS), revocable on
the server, and the login throttles."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import pytest
from ruamel.yaml import YAML
from starlette.applications import Starlette

from engine.config import load_config
from engine.console import HASHING_MAX, Console
from engine.console.sessions import Sessions
from engine.console.users import Users
from engine.store import Journal
from tests.engine.console.support import PASSWORD, csrf_of, login, served_console
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


class TestRevocation:
    """Sessions live on the server: signing out, a new password or removing the user ends them (issue 23)."""

    def test_signing_out_ends_every_copy_of_the_cookie(self, tmp_path: Path) -> None:
        """The cookie of a signed-out session, replayed, no longer opens any page."""
        project = make_project(tmp_path)
        Users(project / "config" / "users.yaml").add("ops.nuit", "operator", PASSWORD)
        with served_console(project) as (base, _, _):
            with httpx.Client(base_url=base) as client:
                assert login(client, "ops.nuit").status_code == 303
                copied = dict(client.cookies)
                assert client.get("/messages").status_code == 200
                out = client.post("/logout", data={"csrf": csrf_of(client.get("/messages").text)})
                assert out.status_code == 303 and out.headers["location"] == "/login"
            with httpx.Client(base_url=base, cookies=copied) as replay:
                again = replay.get("/messages")
                assert again.status_code == 303 and again.headers["location"] == "/login"
                assert replay.get("/api/dashboard").status_code == 401

    def test_a_new_password_or_removing_the_user_ends_their_sessions(self, tmp_path: Path) -> None:
        """Sessions opened before the user's password changed, or before they were removed, stand no more."""
        project = make_project(tmp_path)
        users = Users(project / "config" / "users.yaml")
        users.add("ops.nuit", "operator", PASSWORD)
        users.add("lecteur", "viewer", PASSWORD)
        with served_console(project) as (base, _, _), httpx.Client(base_url=base) as a, \
                httpx.Client(base_url=base) as b, httpx.Client(base_url=base) as c:
            for client, name in ((a, "ops.nuit"), (b, "lecteur"), (c, "ops.nuit")):
                assert login(client, name).status_code == 303
                assert client.get("/messages").status_code == 200
            time.sleep(0.05)  # a later modification time than the file read at sign-in
            users.add("ops.nuit", "operator", "a-brand-new-password")
            assert a.get("/messages").status_code == 303 and c.get("/messages").status_code == 303
            assert b.get("/messages").status_code == 200  # another user's session stands
            yaml = YAML()
            data = yaml.load(users.path.read_text())
            del data["users"]["lecteur"]
            with users.path.open("w") as fh:
                yaml.dump(data, fh)
            assert b.get("/messages").status_code == 303
            assert login(a, "ops.nuit", "a-brand-new-password").status_code == 303  # the new one opens
            assert a.get("/messages").status_code == 200


class TestLoginThrottling:
    """Wrong passwords lock the name and the client address; a try beyond the hashing thread is refused."""

    def test_twenty_wrong_passwords_from_one_address_lock_it_for_every_name(self, tmp_path: Path) -> None:
        """A flood of guesses with a new name each time locks its address: even a right password is refused."""
        project = make_project(tmp_path)
        Users(project / "config" / "users.yaml").add("ops.nuit", "operator", PASSWORD)
        with served_console(project) as (base, console, _), httpx.Client(base_url=base) as client:
            console.passwords.per_second = 1000  # this test is about the address lock, not the global hash budget
            for n in range(20):
                assert login(client, f"guess-{n}", "wrong password").status_code == 200
            refused = login(client, "ops.nuit")
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
            assert 'id="login-error"' in refused.text
            assert client.get("/messages").status_code == 303  # not signed in

    def test_five_wrong_passwords_lock_the_name(self, tmp_path: Path) -> None:
        """The name is locked after five wrong passwords; the right one is then refused before any check."""
        project = make_project(tmp_path)
        Users(project / "config" / "users.yaml").add("ops.nuit", "operator", PASSWORD)
        with served_console(project) as (base, console, _), httpx.Client(base_url=base) as client:
            console.passwords.per_second = 1000  # the name lock, not the global hash budget
            for _ in range(5):
                assert login(client, "ops.nuit", "wrong password").status_code == 200
            assert login(client, "ops.nuit").status_code == 429
            assert client.get("/messages").status_code == 303

    def test_a_try_while_passwords_are_being_hashed_is_refused_at_once(self, tmp_path: Path) -> None:
        """With the hashing thread taken (HASHING_MAX checks in hand), a login is answered 503 without a check."""
        project = make_project(tmp_path)
        Users(project / "config" / "users.yaml").add("ops.nuit", "operator", PASSWORD)
        with served_console(project) as (base, console, _), httpx.Client(base_url=base) as client:
            console.passwords.running = HASHING_MAX
            busy = login(client, "ops.nuit")
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
            assert 'id="login-busy"' in busy.text
            assert client.get("/messages").status_code == 303
            console.passwords.running = 0
            assert login(client, "ops.nuit").status_code == 303  # a refusal for load is no failure
            assert client.get("/messages").status_code == 200


    def test_a_flood_from_many_addresses_spends_at_most_the_seconds_hash_budget(self, tmp_path: Path) -> None:
        """Addresses are cheap to an attacker: whatever their number, no more than `per_second` passwords are
        hashed per second (each costs ~70 ms of a core); a try beyond it is refused 503 without hashing and is
        no failure of the name."""
        project = make_project(tmp_path)
        Users(project / "config" / "users.yaml").add("ops.nuit", "operator", PASSWORD)
        with served_console(project) as (base, console, _), httpx.Client(base_url=base) as client:
            console.passwords.per_second = 2
            console.passwords.started.extend([time.monotonic()] * 2)   # two hashes began just now
            busy = login(client, "ops.nuit")
            assert busy.status_code == 503 and 'id="login-busy"' in busy.text
            console.passwords.started.clear()
            assert login(client, "ops.nuit").status_code == 303


class TestSessions:
    """The server-side session store (engine.console.sessions)."""

    def test_a_session_expires_after_its_lifetime(self) -> None:
        """A session is found until max_age_s has passed, then never again."""
        now = [1000.0]
        sessions = Sessions(max_age_s=60, clock=lambda: now[0])
        sid = sessions.open("ops.nuit", "stamp")
        assert sessions.get(sid) is not None and sessions.get(sid).user == "ops.nuit"  # type: ignore[union-attr]
        now[0] += 59
        assert sessions.get(sid) is not None
        now[0] += 2
        assert sessions.get(sid) is None and len(sessions) == 0

    def test_closing_a_user_ends_only_their_sessions(self) -> None:
        """close_user ends each of the user's sessions and no one else's; unknown ids are no session."""
        sessions = Sessions()
        mine = [sessions.open("a", "s"), sessions.open("a", "s")]
        theirs = sessions.open("b", "s")
        assert sessions.close_user("a") == 2
        assert [sessions.get(s) for s in mine] == [None, None] and sessions.get(theirs) is not None
        assert sessions.get("forged") is None and sessions.get(None) is None

    def test_the_store_is_bounded(self) -> None:
        """Past `limit` sessions the oldest goes first: no flood of sign-ins grows memory without end."""
        sessions = Sessions(limit=3)
        ids = [sessions.open(f"u{n}", "s") for n in range(5)]
        assert len(sessions) == 3 and sessions.get(ids[0]) is None and sessions.get(ids[-1]) is not None
