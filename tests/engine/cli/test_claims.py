"""`wasla claims list|show|close|release` on a real journal (SQLite and PostgreSQL) filled by the claims
stage in process: a parked claim with its reasons, a submitted one with its version, an open one; close and
release are requests the stage carries out on its next turn; declining the prompt asks nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from engine.claims.assembler import ClaimsOutput
from engine.cli import main
from engine.config import load_config
from engine.pipeline.journal_ports import JournalOutputLedger
from engine.runtime import routes_of
from engine.store import Journal
from engine.store.claims import ClaimRow
from engine.transport import open_transport
from tests.engine.claims.claims_support import NGAP, bundle, claims_project, dft, encounter, patient

A03 = {"message_type": "ADT^A03", "received_at": "2026-11-05T10:00:00+00:00"}
DFT = {"message_type": "DFT^P03", "received_at": "2026-11-03T10:00:00+00:00"}


class Stage:
    """A project with a claims destination, its stage in process and the journal it writes."""

    def __init__(self, project: Path, store_url: str) -> None:
        self.project, self.store_url = project, store_url
        config = load_config(project / "config")
        self.journal = Journal(store_url)
        self.out = ClaimsOutput(config.destinations["claims"], project)
        self.out.attach(config, self.journal, open_transport(config.broker, routes_of(config)), start=False)
        self.n = 0

    def send(self, body: bytes, headers: dict[str, str]) -> None:
        self.n += 1
        self.out.deliver(f"m{self.n}", body, JournalOutputLedger(self.journal), headers=headers)

    def visit(self, visit: str, code: str, *, discharge: bool = True) -> ClaimRow:
        self.send(dft(f"T{visit}", NGAP, code, visit=visit), DFT)
        if discharge:
            self.send(bundle(patient(), encounter(visit)), A03)
        return next(r for r in self.journal.claims.search() if self._has(r, f"T{visit}"))

    def _has(self, row: ClaimRow, tid: str) -> bool:
        return any(p["resource"].get("identifier", [{}])[0].get("value") == tid
                   for p in self.journal.claims.parts(row.id) if p["resource"]["resourceType"] == "ChargeItem")

    def wasla(self, *args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(main, ["claims", *args, "--config", str(self.project / "config")], input=input,
                                  env={"WASLA_STORE_URL": self.store_url}, catch_exceptions=False)


@pytest.fixture
def stage(tmp_path: Path, store_url: str) -> Iterator[Stage]:
    s = Stage(claims_project(tmp_path), store_url)
    yield s
    s.out.close()
    s.journal.close()


class TestList:
    def test_lists_each_claim_with_its_state_amounts_and_first_reason(self, stage: Stage) -> None:
        """A parked, a submitted and an open claim, each on one line with its columns; --status filters."""
        parked = stage.visit("V1", "K50")
        sent = stage.visit("V2", "C")
        still = stage.visit("V3", "C", discharge=False)
        shown = stage.wasla("list")
        assert shown.exit_code == 0, shown.output
        lines = {ln.split()[0]: ln.split() for ln in shown.output.splitlines()}
        assert lines[parked.id][1:3] == ["parked", "v0"] and lines[parked.id][-1] == "TARIFF_MISSING"
        assert lines[sent.id][1:6] == ["submitted", "v1", "1", "50.00", "CNSS"]
        assert lines[still.id][1] == "open"
        only = stage.wasla("list", "--status", "parked")
        assert [ln.split()[0] for ln in only.output.splitlines()] == [parked.id]
        assert stage.wasla("list", "--status", "accepted").output.strip() == "no claim"
        closed = stage.visit("V4", "C", discharge=False)
        assert stage.journal.claims.close(closed.id, "operator")  # closed, the stage has not decided yet
        assert [ln.split()[:2] for ln in stage.wasla("list", "--status", "closed").output.splitlines()] == [
            [closed.id, "closed"]]
        assert [ln.split()[0] for ln in stage.wasla("list", "--status", "open").output.splitlines()] == [still.id]
        assert stage.wasla("list", "--destination", "elsewhere").output.strip() == "no claim"

    def test_a_list_holds_no_patient_data(self, stage: Stage) -> None:
        """Ids, codes and amounts only: no patient identifier of the charges."""
        stage.visit("V1", "K50")
        out = stage.wasla("list").output + stage.wasla("show", stage.journal.claims.search()[0].id).output
        assert "IPP1" not in out and "123456789" not in out  # the IPP and the CNSS registration


class TestShow:
    def test_a_parked_claim_shows_each_reason_with_where_and_fix(self, stage: Stage) -> None:
        """Its state and each reason: code, where in the Claim, what was expected, which file fixes it."""
        row = stage.visit("V1", "K50")
        shown = stage.wasla("show", row.id[:8])
        assert shown.exit_code == 0, shown.output
        assert shown.output.splitlines()[0].startswith(f"{row.id}  parked")
        assert "TARIFF_MISSING  at item[0].productOrService" in shown.output
        assert "fix: nomenclatures/ma-tnr/tariffs.csv" in shown.output

    def test_a_sent_claim_shows_its_versions_and_their_delivery_and_json_is_audited(self, stage: Stage) -> None:
        """Version 1 is its FHIR^Claim message; --json prints the Claim, recorded in the audit trail first."""
        row = stage.visit("V2", "C")
        shown = stage.wasla("show", row.id)
        assert f"v1  {row.message_id}" in shown.output
        printed = stage.wasla("show", row.id, "--json", "--by", "dr.alaoui")
        assert printed.exit_code == 0, printed.output
        claim = orjson.loads(printed.output)
        assert claim["resourceType"] == "Claim" and claim["id"] == row.id and claim["total"]["value"] == 50.0
        assert [(a["actor"], a["action"]) for a in stage.journal.audit.records(message_id=row.message_id)] == [
            ("dr.alaoui", "view-fhir")]

    def test_an_unknown_or_ambiguous_claim_is_an_input_error(self, stage: Stage) -> None:
        """Exit 1 with one line, never a traceback."""
        missing = stage.wasla("show", "ffffffff")
        assert missing.exit_code == 1 and "no claim ffffffff" in missing.output
        parked = stage.visit("V1", "K50")
        unsent = stage.wasla("show", parked.id, "--json")
        assert unsent.exit_code == 1 and "never sent" in unsent.output


class TestCloseAndRelease:
    def test_close_is_a_request_the_stage_carries_out_on_its_next_turn(self, stage: Stage) -> None:
        """The claim is open until the stage's turn, then closed by the operator and sent; audited."""
        row = stage.visit("V3", "C", discharge=False)
        asked = stage.wasla("close", row.id, "--yes", "--by", "ops.nuit")
        assert asked.exit_code == 0, asked.output
        assert "requested" in asked.output and "next turn" in asked.output
        assert stage.journal.claims.get(row.id).requested == "close"  # type: ignore[union-attr]
        stage.out.tick()
        after = stage.journal.claims.get(row.id)
        assert after is not None and after.close_reason == "operator" and after.status == "submitted"
        assert [a["action"] for a in stage.journal.audit.records() if a["detail"].get("claim") == row.id] == [
            "claim-close"]
        again = stage.wasla("close", row.id, "--yes")
        assert again.exit_code == 1 and "is submitted" in again.output

    def test_release_after_the_tariff_is_fixed_sends_the_parked_claim(self, stage: Stage) -> None:
        """A parked claim released once its tariff row is loaded is checked again and sent: the operator's
        request, not a change on disk, makes the stage look at it (the tariff is loaded before the turn)."""
        row = stage.visit("V1", "K50")
        tariff = stage.project / "nomenclatures" / "ma-tnr" / "tariffs.csv"
        tariff.write_text(tariff.read_text() + "K,public,13.00,2007-05-01,,test,tests only,indicative\n")
        stage.out._load()  # the reload already seen: only the request can make this turn look again
        stage.out.tick()
        assert stage.journal.claims.get(row.id).status == "parked"  # type: ignore[union-attr]
        assert stage.wasla("release", row.id, input="y\n").exit_code == 0
        stage.out.tick()
        after = stage.journal.claims.get(row.id)
        assert after is not None and after.status == "submitted" and after.total == "650.00"

    def test_declining_the_prompt_asks_nothing_and_is_no_internal_error(self, stage: Stage) -> None:
        """Answering no (or no terminal at all) leaves the claim as it was: exit 1, no 'internal error'."""
        row = stage.visit("V1", "K50")
        for answer in ("n\n", None):
            declined = stage.wasla("release", row.id, input=answer)
            assert declined.exit_code == 1
            assert "internal error" not in declined.output and "nothing asked" in declined.output
        assert stage.journal.claims.get(row.id).requested == ""  # type: ignore[union-attr]
        assert stage.journal.audit.records() == []
