"""The console's claims (issue 26): the list with its states, reason codes and amounts per insurer and day, and
no patient data; a claim's page with its reasons and versions; close and release for operators (CSRF, audited,
carried out by the claims stage on its next turn). Over HTTP on SQLite and PostgreSQL, and in a real browser."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from engine.claims.assembler import ClaimsOutput
from engine.config import load_config
from engine.console.users import Users
from engine.pipeline.journal_ports import JournalOutputLedger
from engine.runtime import routes_of
from engine.store import Journal
from engine.store.claims import ClaimRow
from engine.transport import open_transport
from tests.engine.claims.claims_support import NGAP, bundle, claims_project, dft, encounter, patient
from tests.engine.console.support import PASSWORD, csrf_of, login, served_console
from tests.engine.console.test_console import ARTIFACTS, browser  # noqa: F401 - the browser fixture

A03 = {"message_type": "ADT^A03", "received_at": "2026-11-05T10:00:00+00:00"}
DFT = {"message_type": "DFT^P03", "received_at": "2026-11-03T10:00:00+00:00"}
PHI = ("IPP1", "123456789")  # the patient's IPP, the CNSS registration


class Stage:
    """The claims stage of the project in process, on the journal the console reads."""

    def __init__(self, project: Path, journal: Journal) -> None:
        config = load_config(project / "config")
        self.project, self.journal = project, journal
        self.out = ClaimsOutput(config.destinations["claims"], project)
        self.out.attach(config, journal, open_transport(config.broker, routes_of(config)), start=False)
        self.n = 0

    def visit(self, visit: str, code: str, *, discharge: bool = True) -> ClaimRow:
        ledger = JournalOutputLedger(self.journal)
        self.n += 2
        self.out.deliver(f"m{self.n}", dft(f"T{visit}", NGAP, code, visit=visit), ledger, headers=DFT)
        if discharge:
            self.out.deliver(f"m{self.n + 1}", bundle(patient(), encounter(visit)), ledger, headers=A03)
        return next(r for r in self.journal.claims.search()
                    if any(p["resource"].get("identifier", [{}])[0].get("value") == f"T{visit}"
                           for p in self.journal.claims.parts(r.id) if p["resource"]["resourceType"] == "ChargeItem"))


@pytest.fixture
def console(tmp_path: Path, store_url: str) -> Iterator[tuple[str, Stage]]:
    project = claims_project(tmp_path)
    users = Users(project / "config" / "users.yaml")
    users.add("ops.nuit", "operator", PASSWORD)
    users.add("lecteur", "viewer", PASSWORD)
    with served_console(project, store_url) as (base, _, journal):
        stage = Stage(project, journal)
        yield base, stage
        stage.out.close()


class TestList:
    def test_states_reason_codes_and_amounts_per_insurer_and_day(self, console) -> None:
        """A parked, a submitted and an open claim: each listed with its state; the parked one's reason code;
        the amount sent today for CNSS; the status filter keeps one state."""
        base, stage = console
        parked, sent, still = stage.visit("V1", "K50"), stage.visit("V2", "C"), stage.visit("V3", "C", discharge=False)
        with httpx.Client(base_url=base) as client:
            assert login(client, "lecteur").status_code == 303
            page = client.get("/claims")
            assert page.status_code == 200 and 'id="nav-claims"' in page.text
            row = re.search(rf'<tr class="claim parked" id="claim-{parked.id}">.*?</tr>', page.text, re.S)
            assert row is not None and "TARIFF_MISSING" in row.group(0)
            assert f'<tr class="claim submitted" id="claim-{sent.id}">' in page.text
            assert f'<tr class="claim open" id="claim-{still.id}">' in page.text
            today = f"{datetime.now(UTC):%Y-%m-%d}"
            assert re.search(rf"<td>CNSS</td><td>{today}</td><td>1</td><td dir=\"ltr\">50.00</td>", page.text)
            for state, n in (("parked", 1), ("submitted", 1), ("open", 1), ("accepted", 0)):
                assert re.search(rf'id="count-{state}"[^>]*>[^<]*: <b class="n">{n}</b>', page.text), state
            for value in PHI:
                assert value not in page.text
            assert "built-in method" not in page.text  # every label is a string of the language
            only = client.get("/claims", params={"status": "parked"})
            assert parked.id in only.text and sent.id not in only.text and still.id not in only.text


class TestClaimPage:
    def test_reasons_and_no_buttons_for_a_viewer(self, console) -> None:
        """Code, where, message and fix file of each reason; a viewer sees no button and cannot post."""
        base, stage = console
        parked = stage.visit("V1", "K50")
        with httpx.Client(base_url=base) as client:
            login(client, "lecteur")
            page = client.get(f"/claims/{parked.id}")
            assert page.status_code == 200
            assert "TARIFF_MISSING" in page.text and "item[0].productOrService" in page.text
            assert "nomenclatures/ma-tnr/tariffs.csv" in page.text
            assert "built-in method" not in page.text and "1 Actes" in page.text
            assert 'id="claim-release"' not in page.text and 'id="claim-close"' not in page.text
            refused = client.post(f"/claims/{parked.id}/release", data={"csrf": csrf_of(page.text)},
                                  follow_redirects=True)
            assert refused.status_code == 200 and "Votre rôle ne permet pas" in refused.text
            assert stage.journal.claims.get(parked.id).requested == ""  # type: ignore[union-attr]
            assert client.get("/claims/nope").status_code == 404

    def test_an_operators_close_is_requested_audited_and_done_on_the_next_turn(self, console) -> None:
        """Close needs the CSRF token; it is a request, audited, that the stage's next turn carries out."""
        base, stage = console
        still = stage.visit("V3", "C", discharge=False)
        with httpx.Client(base_url=base) as client:
            login(client, "ops.nuit")
            page = client.get(f"/claims/{still.id}")
            assert 'id="claim-close"' in page.text and 'id="claim-release"' not in page.text
            forged = client.post(f"/claims/{still.id}/close", data={"csrf": "guess"}, follow_redirects=True)
            assert "Votre rôle ne permet pas" in forged.text
            assert stage.journal.claims.get(still.id).requested == ""  # type: ignore[union-attr]
            done = client.post(f"/claims/{still.id}/close", data={"csrf": csrf_of(page.text)},
                               follow_redirects=True)
            assert "Clôture demandée" in done.text and 'id="requested"' in done.text
            assert [(a["actor"], a["action"], a["detail"]["claim"]) for a in stage.journal.audit.records()] == [
                ("ops.nuit", "claim-close", still.id)]
            stage.out.tick()
            after = client.get(f"/claims/{still.id}")
            assert 'id="claim-state" class="submitted"' in after.text and 'id="versions"' in after.text
            again = client.post(f"/claims/{still.id}/close", data={"csrf": csrf_of(after.text)},
                                follow_redirects=True)
            assert "plus dans un état où cette action" in again.text


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_parked_claim_is_released_in_a_real_browser(console, browser: object) -> None:  # noqa: F811
    """The operator sees why a claim is parked, adds the tariff row the reason names, presses Release: once
    the claims stage has taken its turn, the page shows the claim submitted with its version; in Arabic too."""
    base, stage = console
    parked = stage.visit("V1", "K50")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(base + "/login")
    page.fill("#user", "ops.nuit")
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    page.click("#nav-claims")
    page.wait_for_selector("#claims")
    assert "TARIFF_MISSING" in (page.text_content(f"#claim-{parked.id} .codes") or "")
    assert page.text_content(f"#claim-{parked.id} .state") == "en attente"
    page.click(f"#claim-{parked.id} a")
    page.wait_for_selector("#reasons")
    assert page.text_content("#reasons-table .code") == "TARIFF_MISSING"
    assert page.text_content("#reasons-table .fix") == "nomenclatures/ma-tnr/tariffs.csv"
    page.screenshot(path=str(ARTIFACTS / "8-claim-parked.png"), full_page=True)
    tariff = stage.project / "nomenclatures" / "ma-tnr" / "tariffs.csv"
    tariff.write_text(tariff.read_text() + "K,public,13.00,2007-05-01,,test,tests only,indicative\n")
    page.click("#claim-release")
    page.wait_for_selector("#flash")
    assert "Relâche demandée" in (page.text_content("#flash") or "")
    assert [a["action"] for a in stage.journal.audit.records()] == ["claim-release"]
    stage.out.tick()  # the engine's claims stage takes its turn
    page.reload()
    assert page.text_content("#claim-state") == "transmise"
    assert page.locator("#versions tbody tr").count() == 1
    assert page.locator("#reasons").count() == 0
    page.click("#lang-ar")
    page.wait_for_selector("html[dir=rtl]")
    assert page.text_content("#claim-state") == "مُرسلة"
    page.screenshot(path=str(ARTIFACTS / "9-claim-submitted-ar.png"), full_page=True)
    page.click("#nav-claims")
    page.wait_for_selector("#amounts-table")
    assert "650.00" in (page.text_content("#amounts-table") or "")  # K 50 × 13.00
