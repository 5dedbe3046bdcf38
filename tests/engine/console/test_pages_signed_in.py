"""Every console page but the login needs a signed-in user (`signed_in`, engine.console.pages): anyone else
is redirected to /login with 303, the dashboard's JSON answers 401; roles are still checked by the page."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from engine.console.users import Users
from tests.engine.console.support import PASSWORD, login, served_console
from tests.support import make_project

PAGES = [("GET", "/"), ("GET", "/messages"), ("GET", "/messages/M1"), ("GET", "/messages/M1/raw"),
         ("GET", "/messages/M1/fhir/archive-ndjson"), ("POST", "/messages/M1/replay"), ("GET", "/dead"),
         ("POST", "/dead/archive-ndjson/replay"), ("GET", "/channels/adt-mllp"),
         ("POST", "/channels/adt-mllp/test")]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project = make_project(tmp_path)
    users = Users(project / "config" / "users.yaml")
    users.add("lecteur", "viewer", PASSWORD)
    return project


class TestSignedIn:
    """The signed-in check, for every page."""

    def test_every_page_sends_a_stranger_to_login(self, project: Path) -> None:
        """Without a session each page answers 303 to /login, and the dashboard's data 401."""
        with served_console(project) as (base, _, _), httpx.Client(base_url=base) as client:
            for method, path in PAGES:
                answer = client.request(method, path, data={"csrf": "guess"} if method == "POST" else None)
                assert (path, answer.status_code, answer.headers.get("location")) == (path, 303, "/login")
            data = client.get("/api/dashboard")
            assert (data.status_code, data.json()) == (401, {"error": "login"})

    def test_a_signed_in_viewer_sees_pages_and_cannot_replay(self, project: Path) -> None:
        """A viewer reads every page (an unknown message is 404); a replay is refused by role, not by login."""
        with served_console(project) as (base, _, _), httpx.Client(base_url=base) as client:
            assert login(client, "lecteur").status_code == 303
            for path in ("/", "/messages", "/dead", "/channels/adt-mllp"):
                assert (path, client.get(path).status_code) == (path, 200)
            assert client.get("/messages/M1").status_code == 404
            assert client.get("/api/dashboard").status_code == 200
            replay = client.post("/messages/M1/replay", data={"csrf": "guess"})
            assert (replay.status_code, replay.headers["location"]) == (303, "/messages/M1")
