"""The console's claims (issue 26): the claims the claims stage gathered, filtered by state, with the amounts
sent per insurer and day (/claims); a claim's page with the reasons it is parked for, its versions and the
insurer's answer (/claims/{id}); an operator's close or release of a claim (POST)."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from engine.console.pages import Pages, signed_in
from engine.console.users import User
from engine.store import Journal
from engine.store.claims import STATES, ClaimRow

__all__ = ["ACTIONS", "Claims"]

#: what an operator may ask of a claim, and the states it may be asked in
ACTIONS = {"close": ("open",), "release": ("parked", "closed")}
LIST_MAX = 500       # claims on the list page, most recently changed first
SUMMARY_MAX = 10_000  # claims the amounts per insurer and day are summed over
_SENT = ("submitted", "accepted")


def _amount(text: str) -> Decimal:
    try:
        return Decimal(text or "0")
    except InvalidOperation:
        return Decimal("0")


def summary(rows: list[ClaimRow]) -> tuple[list[tuple[str, str, int, str]], dict[str, int]]:
    """The amounts sent (submitted or accepted claims) per insurer and day of submission, newest day first,
    as (insurer, day, claims, total MAD); and the number of claims in each state."""
    sums: dict[tuple[str, str], tuple[int, Decimal]] = {}
    for r in rows:
        if r.status in _SENT and r.submitted_at is not None:
            key = (r.insurer or "-", f"{r.submitted_at:%Y-%m-%d}")
            n, total = sums.get(key, (0, Decimal("0")))
            sums[key] = (n + 1, total + _amount(r.total))
    amounts = [(ins, day, n, str(total.quantize(Decimal("0.01"))))
               for (ins, day), (n, total) in sorted(sums.items(), key=lambda kv: (kv[0][1], kv[0][0]), reverse=True)]
    counts = Counter(r.state for r in rows)
    return amounts, {s: counts.get(s, 0) for s in STATES}


class Claims:
    """The claims list and a claim's page, for signed-in users; close and release for operators. The pages
    show ids, codes, amounts and reasons only (a reason never holds patient data): no claim content is read,
    so nothing is audited for a view; the versions link to their message pages, which are. A close or release
    needs the operator role, the session's CSRF token and a claim in a state it applies to; it is recorded as
    a request the engine's claims stage carries out on its next turn, and audited. The journal is read on a
    worker thread."""

    def __init__(self, pages: Pages, journal: Journal) -> None:
        self.pages = pages
        self.journal = journal

    def routes(self) -> list[Route]:
        return [Route("/claims", self.claims), Route("/claims/{claim_id}", self.claim),
                Route("/claims/{claim_id}/{action}", self.ask, methods=["POST"])]

    @signed_in
    async def claims(self, request: Request, user: User) -> Response:
        state = request.query_params.get("status") or ""
        state = state if state in STATES else ""

        def read() -> tuple[list[ClaimRow], list[tuple[str, str, int, str]], dict[str, int]]:
            every = self.journal.claims.search(limit=SUMMARY_MAX)
            amounts, counts = summary(every)
            return self.journal.claims.search(state=state, limit=LIST_MAX), amounts, counts

        rows, amounts, counts = await asyncio.to_thread(read)
        return self.pages.render(request, "claims.html", rows=rows, amounts=amounts, counts=counts, states=STATES,
                                 state=state)

    @signed_in
    async def claim(self, request: Request, user: User) -> Response:
        view = await asyncio.to_thread(self._claim_view, request.path_params["claim_id"])
        if view is None:
            return Response("not found", status_code=404)
        return self.pages.render(request, "claim.html", **view, actions=ACTIONS)

    def _claim_view(self, claim_id: str) -> dict[str, Any] | None:
        """The claim, its versions (the FHIR^Claim messages, each output's status) and its answer: metadata."""
        row = self.journal.claims.get(claim_id)
        if row is None:
            return None
        versions = []
        for version in range(1, row.version + 1):
            for m in self.journal.messages.search(control_id=f"{row.id}/{version}", message_type="FHIR^Claim",
                                                  limit=5):
                outputs = []
                for dest in self.journal.outputs.destinations(m.id):
                    out = self.journal.outputs.get(m.id, dest, 0)
                    if out is not None:
                        outputs.append((dest, out.status))
                versions.append({"version": version, "message": m, "outputs": outputs})
        answer = self.journal.messages.get(row.response_id) if row.response_id else None
        return {"row": row, "versions": versions, "answer": answer}

    @signed_in
    async def ask(self, request: Request, user: User) -> Response:
        claim_id, action = request.path_params["claim_id"], request.path_params["action"]
        back = RedirectResponse(f"/claims/{claim_id}", status_code=303)
        form = await self.pages.form(request)
        if form is None or not user.can("operator") or action not in ACTIONS:
            request.session["flash"] = "forbidden"
            return back
        client = request.client.host if request.client else ""

        def record() -> str:
            row = self.journal.claims.get(claim_id)
            if row is None:
                return "claim_gone"
            if row.state not in ACTIONS[action]:
                return "claim_not_now"
            self.journal.claims.request(row.id, action)
            self.journal.audit.record(user.name, f"claim-{action}", [row.message_id], client,
                                      {"claim": row.id, "via": "console"})
            return f"claim_{action}_requested"

        request.session["flash"] = await asyncio.to_thread(record)
        return back
