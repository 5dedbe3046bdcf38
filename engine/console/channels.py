"""The console's channel page (/channels/{id}): the channel's file as written, its destinations, the problems
of the configuration as it is now on disk, and "try a message": a pasted message converted with the channel's
mapping, nothing journaled and nothing sent."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from engine.config import Config, load_config
from engine.console.pages import Pages, signed_in
from engine.console.users import User
from engine.errors import ConfigErrors, MappingError, ParseError
from engine.formats import Mappings
from engine.hl7v2.er7 import parse

__all__ = ["Channels"]

TEST_MAX_BYTES = 1 << 20  # a message pasted on the channel page


class Channels:
    """The channel page and its dry-run conversion, for signed-in users. The page shows the channel's YAML as
    written (${ENV} references unexpanded: no secret from the environment is shown). A try needs the operator
    role, the session's CSRF token and the installation's mappings (`converter`); it converts on a worker
    thread as the transform would, journals nothing and sends nothing."""

    def __init__(self, pages: Pages, config: Config, converter: Mappings | None) -> None:
        self.pages = pages
        self.config = config
        self.converter = converter

    def routes(self) -> list[Route]:
        return [Route("/channels/{channel_id}", self.channel),
                Route("/channels/{channel_id}/test", self.channel_test, methods=["POST"])]

    @signed_in
    async def channel(self, request: Request, user: User, *, sample: str = "", test_error: str = "",
                      test_bundle: str = "") -> Response:
        """The channel page; after a try, with the message tried and the Bundle or the error it gave."""
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
        return self.pages.render(request, "channel.html", channel=ch, yaml_text=text, destinations=dests,
                                 problems=problems, sample=sample, test_error=test_error, test_bundle=test_bundle)

    @signed_in
    async def channel_test(self, request: Request, user: User) -> Response:
        """Convert a pasted message with the channel's mapping, as the transform would: nothing journaled,
        nothing sent; the error names the rule and field, as the journal would."""
        form = await self.pages.form(request)
        if form is None or not user.can("operator") or self.converter is None:
            request.session["flash"] = "forbidden"
            return RedirectResponse(request.url.path.removesuffix("/test"), status_code=303)
        ch = self.config.channel(request.path_params["channel_id"])
        sample = str(form.get("message", ""))
        if len(sample) > TEST_MAX_BYTES:
            return await self.channel(request, test_error=f"over {TEST_MAX_BYTES // 1024} KB: too large to try here",
                                      sample="")
        text = sample.replace("\r\n", "\r").replace("\n", "\r")
        converter = self.converter

        def convert() -> str:
            msg = parse(text)
            mapping = ch.mapping_for(msg.message_type)
            if mapping is None:
                raise MappingError(f"no mapping of this channel takes {msg.message_type or '(no type)'}", field="MSH-9")
            conversion = converter.convert(mapping, msg, datetime.now(UTC), ch.policy())
            return orjson.dumps(orjson.loads(conversion.bundle), option=orjson.OPT_INDENT_2).decode()

        try:
            bundle = await asyncio.to_thread(convert)
        except (ParseError, MappingError) as exc:
            return await self.channel(request, test_error=str(exc), sample=sample)
        return await self.channel(request, test_bundle=bundle, sample=sample)
