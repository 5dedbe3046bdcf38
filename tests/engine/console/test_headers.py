"""Security headers on every answer of the ops port, no inline script, and redirects that never take
the Host header's word (engine.console.headers; issue 23)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from engine.console.users import Users
from tests.engine.console.support import login, served_console
from tests.support import ROOT, make_project

TEMPLATES = ROOT / "engine" / "console" / "templates"
PAGES = ["/login", "/", "/messages", "/dead", "/channels/adt-mllp", "/api/dashboard", "/metrics", "/health/live",
         "/static/console.css", "/static/dashboard.js", "/messages/no-such-message"]


@pytest.fixture
def signed_in(tmp_path: Path):  # type: ignore[no-untyped-def]
    project = make_project(tmp_path)
    Users(project / "config" / "users.yaml").add("ops.nuit", "operator", "correct-horse-battery")
    with served_console(project) as (base, _, _), httpx.Client(base_url=base) as client:
        assert login(client, "ops.nuit").status_code == 303
        yield client


class TestSecurityHeaders:
    @pytest.mark.parametrize("path", PAGES)
    def test_every_answer_carries_the_headers(self, signed_in: httpx.Client, path: str) -> None:
        """CSP without inline script and with frame-ancestors 'none', DENY, nosniff, same-origin referrers."""
        answer = signed_in.get(path)
        assert answer.status_code in (200, 404)
        csp = answer.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["script-src"] == "'self'" and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert directives["frame-ancestors"] == "'none'" and directives["default-src"] == "'none'"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] in ("no-referrer", "same-origin")

    @pytest.mark.parametrize("path", [p for p in PAGES if not p.startswith("/static/")])
    def test_pages_are_never_cached(self, signed_in: httpx.Client, path: str) -> None:
        """Pages show patient data: Cache-Control no-store on each of them (static files may be cached)."""
        assert signed_in.get(path).headers["cache-control"] == "no-store"

    def test_static_files_may_be_cached(self, signed_in: httpx.Client) -> None:
        """The stylesheet and script hold no patient data: no no-store there."""
        assert "no-store" not in signed_in.get("/static/console.css").headers.get("cache-control", "")

    def test_no_template_has_an_inline_script_or_handler(self) -> None:
        """The CSP forbids inline script: every <script> of the templates has a src, and no on…= handler."""
        for template in TEMPLATES.glob("*.html"):
            text = template.read_text()
            assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", text) == [], template.name
            assert re.findall(r"\son[a-z]+\s*=", text) == [], template.name
            assert "style=" not in text, template.name


class TestRedirects:
    """Redirects are relative paths: a forged Host header or Referer never sends a browser elsewhere."""

    def test_the_login_redirect_ignores_the_host_header(self, signed_in: httpx.Client) -> None:
        """Unsigned, a page sends to /login whatever Host the request claims."""
        with httpx.Client(base_url=str(signed_in.base_url)) as anonymous:
            answer = anonymous.get("/messages", headers={"Host": "evil.example"})
        assert answer.status_code == 303 and answer.headers["location"] == "/login"

    @pytest.mark.parametrize(("referer", "back"), [
        ("http://evil.example/messages?control_id=X", "/messages?control_id=X"),  # the path only, never the host
        ("https://evil.example//evil.example/", "/"),
        ("//evil.example/x", "/x"),
        ("javascript:alert(1)", "/"),
        ("http://evil.example/\\evil.example", "/"),
        ("", "/"),
    ])
    def test_the_language_switch_goes_back_to_a_local_path(self, signed_in: httpx.Client, referer: str,
                                                            back: str) -> None:
        """With Host and Referer both naming another site, the answer names a path of this one."""
        answer = signed_in.get("/lang/en", headers={"Host": "evil.example", "Referer": referer})
        assert answer.status_code == 303 and answer.headers["location"] == back

    def test_signing_in_and_out_redirect_to_local_paths(self, tmp_path: Path) -> None:
        """The answers to the login and logout forms name local paths, whatever the Host header."""
        project = make_project(tmp_path)
        Users(project / "config" / "users.yaml").add("ops.nuit", "operator", "correct-horse-battery")
        with served_console(project) as (base, _, _), httpx.Client(base_url=base,
                                                                    headers={"Host": "evil.example"}) as client:
            signed = login(client, "ops.nuit")
            assert signed.status_code == 303 and signed.headers["location"] == "/"
            from tests.engine.console.support import csrf_of

            out = client.post("/logout", data={"csrf": csrf_of(client.get("/messages").text)})
            assert out.status_code == 303 and out.headers["location"] == "/login"
