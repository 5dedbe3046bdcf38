"""The web console: dashboard, message log and message page, replay; French, English, Arabic (RTL).

Served with /metrics on the ops port of an engine process (engine.ops). Local users from
`config/users.yaml` (`wasla user add`), roles viewer < operator < admin. The session is a signed
cookie (Starlette's SessionMiddleware: HttpOnly, SameSite=Strict, 8 hours, Secure with
`ops.secure_cookies`), every form carries a per-session CSRF token, and a name is locked for a
minute after five wrong passwords. Viewing a message's content writes one audit record before the
page is sent; a replay writes one too.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from ruamel.yaml import YAML
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from engine import metrics
from engine.config import Config, load_config
from engine.console.users import User, Users
from engine.errors import ConfigErrors, MappingError, ParseError
from engine.hl7v2.er7 import decode, parse
from engine.hl7v2.reference import field_info
from engine.store import Journal, mapping_warnings
from engine.types import Status

__all__ = ["Console"]

_HERE = Path(__file__).parent
LANGS = ("fr", "en", "ar")
CHANNEL_STATUSES = ("received", "transformed", "filtered", "delivered", "failed", "parked")
DESTINATION_STATUSES = ("delivered", "retrying", "waiting", "dead")


def _strings() -> dict[str, dict[str, str]]:
    yaml = YAML(typ="safe")
    return {lang: yaml.load((_HERE / "i18n" / f"{lang}.yaml").read_text(encoding="utf-8")) for lang in LANGS}


class Console:
    def __init__(self, config: Config, journal: Journal, depths: Callable[[], dict[str, int]],
                 converter: Any = None) -> None:
        self.converter = converter  # for the channel page's dry-run conversion
        self.config = config
        self.journal = journal
        self.depths = depths
        self.users = Users(config.config_dir / "users.yaml")
        self.strings = _strings()
        self.templates = Jinja2Templates(directory=str(_HERE / "templates"))
        self.secret = journal.meta_secret("console_session_secret", "WASLA_CONSOLE_SECRET").decode()
        self._failures: dict[str, tuple[int, float]] = {}
        self._trend: deque[tuple[float, dict[str, int]]] = deque(maxlen=60)  # (time, received per channel)
        self._trend_at = time.time()

    def middleware(self) -> list[Middleware]:
        return [Middleware(SessionMiddleware, secret_key=self.secret, session_cookie="wasla_session",
                           max_age=8 * 3600, same_site="strict",
                           https_only=self.config.ops.secure_cookies)]

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.dashboard), Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", self.logout, methods=["POST"]), Route("/lang/{lang}", self.language),
            Route("/api/dashboard", self.dashboard_data), Route("/messages", self.messages),
            Route("/messages/{message_id}", self.message),
            Route("/messages/{message_id}/replay", self.replay, methods=["POST"]),
            Route("/dead", self.dead), Route("/dead/{destination}/replay", self.dead_replay, methods=["POST"]),
            Route("/channels/{channel_id}", self.channel),
            Route("/channels/{channel_id}/test", self.channel_test, methods=["POST"]),
            Mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static"),
        ]

    # -- session ------------------------------------------------------------------------------
    def _user(self, request: Request) -> User | None:
        name = request.session.get("user")
        role = self.users.role_of(name) if name else None  # a removed user or changed role counts at once
        return User(name, role) if name and role else None

    def _csrf(self, request: Request) -> str:
        token = request.session.get("csrf")
        if not token:
            token = request.session["csrf"] = secrets.token_urlsafe(24)
        return str(token)

    async def _form(self, request: Request) -> FormData | None:
        """The posted form if its CSRF token is this session's, else None."""
        form = await request.form()
        expected = request.session.get("csrf", "")
        return form if expected and hmac.compare_digest(str(form.get("csrf", "")), expected) else None

    def _page(self, request: Request, template: str, **context: Any) -> Response:
        lang = request.session.get("lang", "fr")
        flash = request.session.pop("flash", None)
        return self.templates.TemplateResponse(request, template, {
            "lang": lang, "t": self.strings[lang], "user": self._user(request), "csrf": self._csrf(request),
            "flash": self.strings[lang].get(flash, "") if flash else "", **context})

    @staticmethod
    def _to_login() -> Response:
        return RedirectResponse("/login", status_code=303)

    # -- pages --------------------------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return self._page(request, "login.html", error=False)
        form = await self._form(request)
        if form is None:
            return self._page(request, "login.html", error=True)
        name = str(form.get("user", ""))
        count, until = self._failures.get(name, (0, 0.0))
        user = None if time.monotonic() < until else self.users.check(name, str(form.get("password", "")))
        if user is None:
            count += 1
            self._failures[name] = (count, time.monotonic() + 60 if count >= 5 else 0.0)
            return self._page(request, "login.html", error=True)
        self._failures.pop(name, None)
        lang = request.session.get("lang", "fr")
        request.session.clear()  # a new session at login: no fixation
        request.session.update({"user": user.name, "lang": lang, "csrf": secrets.token_urlsafe(24)})
        return RedirectResponse("/", status_code=303)

    async def logout(self, request: Request) -> Response:
        if await self._form(request) is not None:
            request.session.clear()
        return self._to_login()

    async def language(self, request: Request) -> Response:
        lang = request.path_params["lang"]
        if lang in LANGS:
            request.session["lang"] = lang
        back = request.headers.get("referer", "/")
        return RedirectResponse(back if back.startswith(str(request.base_url)) else "/", status_code=303)

    async def dashboard(self, request: Request) -> Response:
        if self._user(request) is None:
            return self._to_login()
        return self._page(request, "dashboard.html", channel_statuses=CHANNEL_STATUSES,
                          destination_statuses=DESTINATION_STATUSES)

    async def dashboard_data(self, request: Request) -> Response:
        if self._user(request) is None:
            return JSONResponse({"error": "login"}, status_code=401)
        return JSONResponse(self.journal_dashboard())

    def journal_dashboard(self) -> dict[str, Any]:
        """Counts of the last 24 hours per channel; what waits or failed per destination; queue depths."""
        since = time.time() - 86400
        counts = self.journal.status_counts(since)
        depths = self.depths()
        delivered = self.journal.delivered_since(list(self.config.destinations), since)
        circuits = metrics.open_circuits()
        channels = []
        for ch in self.config.channels:
            c = dict(counts.get(ch.id, {}))
            c["received"] = sum(c.values())
            errors = self.journal.search(channel=ch.id, status=Status.FAILED, limit=1)
            channels.append({"id": ch.id, "counts": c, "alert": bool(c.get("failed") or c.get("parked")),
                             "last_error": errors[0].reason[:200] if errors else ""})
        waiting = self.journal.output_counts()
        destinations = []
        for dest in self.config.destinations:
            c = {"delivered": delivered.get(dest, 0), **waiting.get(dest, {})}
            queued = sum(n for q, n in depths.items() if q.startswith(f"wasla.deliver.{dest}."))
            destinations.append({"id": dest, "counts": c, "queued": queued,
                                 "alert": bool(c.get("dead")) or dest in circuits})
        trend = self._sample_trend()
        for c in channels:
            c["trend"] = [n.get(c["id"], 0) for _, n in trend]
        return {"channels": channels, "destinations": destinations}

    def _sample_trend(self) -> list[tuple[float, dict[str, int]]]:
        """Messages received per channel in each interval since the last sample (at least 5 s apart):
        the dashboard's sparkline, read through the time index, never a scan."""
        now = time.time()
        if now - self._trend_at >= 5:
            self._trend.append((now, self.journal.received_since(self._trend_at)))
            self._trend_at = now
        return list(self._trend)

    async def messages(self, request: Request) -> Response:
        if self._user(request) is None:
            return self._to_login()
        q = {k: request.query_params.get(k) or None for k in ("control_id", "channel", "status")}
        rows = self.journal.search(**q, limit=100)  # type: ignore[arg-type]
        statuses = (*Status.UNFINISHED, Status.DELIVERED, Status.FAILED, Status.FILTERED, Status.PARKED)
        return self._page(request, "messages.html", rows=rows, q=q, statuses=statuses)

    async def message(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return self._to_login()
        mid = request.path_params["message_id"]
        row = self.journal.get(mid)
        if row is None:
            return Response("not found", status_code=404)
        client = request.client.host if request.client else ""
        self.journal.audit(user.name, "view", [mid], client, {"via": "console"})  # before any content is sent
        segments, raw_text = _layout(row.raw)
        outputs = []
        for dest in self.journal.output_destinations(mid):
            out = self.journal.output(mid, dest)
            if out is not None:
                body = orjson.dumps(orjson.loads(out.body), option=orjson.OPT_INDENT_2).decode() if out.body else ""
                outputs.append((dest, out.status, body))
        events = [{**ev, "summary": _summary(ev["detail"])} for ev in self.journal.events(mid)]
        lineage, not_read = self._lineage(row, events)
        return self._page(request, "message.html", row=row, segments=segments, raw_text=raw_text, outputs=outputs,
                          events=events, lineage=lineage, not_read=not_read, warnings=mapping_warnings(events))

    def _lineage(self, row: Any, events: list[dict[str, Any]]) -> tuple[list[dict[str, str]], list[str]]:
        """What `wasla convert --explain` shows: each FHIR element and the HL7 v2 fields it came from."""
        mapping = next((ev["detail"].get("mapping") for ev in reversed(events)
                        if ev["stage"] == "transform" and ev["detail"].get("mapping")), None)
        if self.converter is None or not mapping or not row.raw or row.message_type.startswith(("CSV^", "FHIR^")):
            return [], []
        from engine.mapping.explain import describe

        try:
            msg = parse(decode(row.raw))
            ex = self.converter.explain(mapping, msg, row.received_at)
        except (ParseError, MappingError, KeyError, ValueError):
            return [], []
        rows = [{"resource": r.resource, "element": r.element, "rule": r.rule,
                 "sources": ", ".join(describe(s, msg.version) for s in r.sources)} for r in ex.lineage]
        return rows, [describe(p, msg.version) for p in ex.not_read]

    async def replay(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return self._to_login()
        mid = request.path_params["message_id"]
        form = await self._form(request)
        if form is None or not user.can("operator"):
            request.session["flash"] = "forbidden"
            return RedirectResponse(f"/messages/{mid}", status_code=303)
        if self.journal.present([mid]):
            client = request.client.host if request.client else ""
            self.journal.request_replays([mid], "transform", "", user.name)
            self.journal.audit(user.name, "replay", [mid], client, {"mode": "transform", "via": "console"})
            request.session["flash"] = "replay_requested"
        return RedirectResponse(f"/messages/{mid}", status_code=303)


    async def dead(self, request: Request) -> Response:
        """Dead letters per destination (bulk replay), and the local codes holding parked messages."""
        if self._user(request) is None:
            return self._to_login()
        groups = [(dest, self.journal.search(destination=dest, output_status="dead", limit=500))
                  for dest in self.config.destinations]  # metadata only: no body is read for a list
        return self._page(request, "dead.html", groups=groups, unmapped=self.journal.parked_codes())

    async def dead_replay(self, request: Request) -> Response:
        user = self._user(request)
        if user is None:
            return self._to_login()
        dest = request.path_params["destination"]
        form = await self._form(request)
        if form is None or not user.can("operator") or dest not in self.config.destinations:
            request.session["flash"] = "forbidden"
            return RedirectResponse("/dead", status_code=303)
        dead = set(self.journal.dead_letters(dest))
        chosen = sorted(dead) if form.get("scope") == "all" else [str(v) for v in form.getlist("id") if v in dead]
        if chosen:
            client = request.client.host if request.client else ""
            self.journal.request_replays(chosen, "deliver", dest, user.name)
            self.journal.audit(user.name, "replay", chosen, client, {"mode": "deliver", "destination": dest,
                                                                      "via": "console"})
            request.session["flash"] = "replays_requested"
        return RedirectResponse("/dead", status_code=303)

    async def channel(self, request: Request, **extra: Any) -> Response:
        if self._user(request) is None:
            return self._to_login()
        try:
            ch = self.config.channel(request.path_params["channel_id"])
        except KeyError:
            return Response("not found", status_code=404)
        # the file as written (${ENV} references unexpanded: no secret from the environment is shown)
        text = (self.config.config_dir / "channels" / f"{ch.id}.yaml").read_text(encoding="utf-8")
        dests = [d for d in self.config.destinations if d in ch.outputs or ch.id in
                 self.config.destinations[d].route.channels]
        try:  # the files as they are now: an edit not yet loaded may have broken them
            load_config(self.config.config_dir)
            problems: list[str] = []
        except ConfigErrors as exc:
            problems = [str(e) for e in exc.errors]
        return self._page(request, "channel.html", channel=ch, yaml_text=text, destinations=dests,
                          problems=problems, **extra)

    async def channel_test(self, request: Request) -> Response:
        """Convert a pasted message with the channel's mapping, as the transform would: nothing journaled,
        nothing sent; the error names the rule and field, as the journal would."""
        user = self._user(request)
        if user is None:
            return self._to_login()
        form = await self._form(request)
        if form is None or not user.can("operator") or self.converter is None:
            request.session["flash"] = "forbidden"
            return RedirectResponse(request.url.path.removesuffix("/test"), status_code=303)
        ch = self.config.channel(request.path_params["channel_id"])
        sample = str(form.get("message", ""))
        text = sample.replace("\r\n", "\r").replace("\n", "\r")
        try:
            conversion = self.converter.convert(ch.mapping, parse(text), datetime.now(UTC), ch.policy())
        except (ParseError, MappingError) as exc:
            return await self.channel(request, test_error=str(exc), sample=sample)
        bundle = orjson.dumps(orjson.loads(conversion.bundle), option=orjson.OPT_INDENT_2).decode()
        return await self.channel(request, test_bundle=bundle, sample=sample)


def _layout(raw: bytes) -> tuple[list[dict[str, Any]], str]:
    """The message by segment and field, with field names from hl7apy's reference; the plain text if
    it does not parse; nothing once retention erased it."""
    if not raw:
        return [], ""
    text = decode(raw)
    try:
        msg = parse(text)
    except ParseError:
        return [], text.replace("\r", "\n")
    segments = []
    for seg in msg.segments:
        fields = []
        for n, value in enumerate(seg.raw_fields()[1:], start=1):  # index n is field n (MSH-1 included)
            if not value:
                continue
            info = field_info(seg.name, n)
            fields.append({"n": n, "label": info[1] if info else "", "value": value})
        segments.append({"name": seg.name, "fields": fields})
    return segments, ""


def _summary(detail: dict[str, Any]) -> str:
    keep = {k: v for k, v in detail.items() if k in ("destination", "reason", "location", "mapping", "round",
                                                     "retry_in_s", "behind", "mode", "by")}
    return orjson.dumps(keep).decode()[:300] if keep else ""
