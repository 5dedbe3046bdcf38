"""The insurer adapter: a claim version as one JSON file in the documented shape, a line per claim version in
the insurer's daily bordereau, each exactly once across redeliveries and crashes; anything but a Claim Bundle
is refused with why. The Claim Bundles are made by the claims stage itself (engine.claims), in process."""

from __future__ import annotations

import csv
import hashlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import httpx
import orjson
import pytest

from channels.insurer import FORMAT, InsurerOutput
from engine.claims.assembler import ClaimsOutput
from engine.config import DestinationConfig, load_config
from engine.errors import PermanentDeliveryError, TransientDeliveryError
from engine.pipeline.journal_ports import JournalOutputLedger
from engine.runtime import routes_of
from engine.store import Journal
from engine.transport import open_transport
from tests.engine.claims.claims_support import NABM, NGAP, bundle, claims_project, dft, encounter, entry, patient
from tests.support import WASLA, engine, free_port, wait_port

A03 = {"message_type": "ADT^A03", "received_at": "2026-11-05T10:00:00+00:00"}
DFT = {"message_type": "DFT^P03", "received_at": "2026-11-03T10:00:00+00:00"}
ICD10 = entry({"resourceType": "Condition", "id": "50000000-0000-5000-8000-000000000001",
               "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10"}]},
               "subject": {"reference": "urn:uuid:00000000-0000-5000-8000-000000000001"}})


@pytest.fixture
def claims(tmp_path: Path) -> Iterator[tuple[ClaimsOutput, Journal]]:
    """The claims stage of a project, in process, on a SQLite journal."""
    project = claims_project(tmp_path / "project")
    config = load_config(project / "config")
    journal = Journal(f"sqlite:///{tmp_path}/j.db")
    out = ClaimsOutput(config.destinations["claims"], project)
    out.attach(config, journal, open_transport(config.broker, routes_of(config)), start=False)
    yield out, journal
    journal.close()


def _claim_bundles(journal: Journal) -> list[bytes]:
    rows = sorted((r for r in journal.messages.search() if r.message_type == "FHIR^Claim"), key=lambda r: r.control_id)
    return [journal.messages.get(r.id).raw for r in rows]  # type: ignore[union-attr]


def _sent_visit(out: ClaimsOutput, journal: Journal) -> bytes:
    """A visit's claim as the stage sends it: a consultation (C) and a lab act (B120), a diagnosis (I10)."""
    ledger = JournalOutputLedger(journal)
    out.deliver("m1", dft("T1", NGAP, "C"), ledger, headers=DFT)
    out.deliver("m2", dft("T2", NABM, "B120"), ledger, headers=DFT)
    out.deliver("m3", bundle(patient(), encounter(), ICD10), ledger, headers=A03)
    [body] = _claim_bundles(journal)
    return body


def _adapter(tmp_path: Path) -> InsurerOutput:
    return InsurerOutput(DestinationConfig("amo-files", "x.yaml", "insurer", MappingProxyType({"path": "amo"})),
                         tmp_path)


def _bordereau(tmp_path: Path) -> list[dict[str, str]]:
    (path,) = (tmp_path / "amo").glob("bordereau-*.csv")
    return list(csv.DictReader(path.read_text().splitlines()))


class TestClaimFile:
    def test_a_claim_version_is_written_in_the_documented_shape(self, tmp_path: Path, claims) -> None:
        """Claim id and version, facility INPE, insurer code, registration, prescriber, ICD-10, acts, total, dates."""
        out, journal = claims
        body = _sent_visit(out, journal)
        claim = orjson.loads(body)["entry"][0]["resource"]
        adapter = _adapter(tmp_path)
        name = adapter.deliver("c1", body, JournalOutputLedger(journal))
        assert name == f"claim-{claim['id']}-v1.json"
        doc = orjson.loads((tmp_path / "amo" / name).read_bytes())
        assert doc["format"] == FORMAT == "wasla-insurer-claim/1"
        assert doc["claim"] == {"id": claim["id"], "version": 1, "type": "institutional", "use": "claim",
                                "replaces": ""}
        assert doc["facility"] == {"inpe": "123456780"} and doc["insurer"] == {"code": "CNSS"}
        assert doc["patient"] == {"registration": "123456789"}
        assert doc["beneficiary"] == {"relationship": "self", "dependent": ""}
        assert doc["prescribers_inpe"] == ["111111118"] and doc["diagnoses_icd10"] == ["I10"]
        assert [(a["system"], a["code"], a["quantity"], a["unit_price"], a["net"], a["date"]) for a in doc["acts"]] == [
            (NABM, "B120", 1.0, "108.00", "108.00", "2026-11-03"), (NGAP, "C", 1.0, "50.00", "50.00", "2026-11-03")]
        assert doc["acts"][0]["care_team_inpe"] == ["111111118", "222222226"]
        assert doc["total"] == "158.00" and doc["currency"] == "MAD"
        assert doc["dates"]["created"] == claim["created"] and doc["dates"]["start"] == "2026-11-03"
        assert [p.name for p in (tmp_path / "amo").iterdir() if p.name.startswith(".")] == []  # no temporary left
        day = claim["created"][:10]
        assert (tmp_path / "amo" / f"bordereau-CNSS-{day}.csv").read_text() == (
            f"claim_id,version,items,total\n{claim['id']},1,2,158.00\n")

    def test_a_redelivery_finds_the_file_and_writes_nothing_again(self, tmp_path: Path, claims) -> None:
        """The same version again (a lost acknowledgement): None, one file, one bordereau line."""
        out, journal = claims
        body = _sent_visit(out, journal)
        adapter = _adapter(tmp_path)
        first = adapter.deliver("c1", body, JournalOutputLedger(journal))
        written = (tmp_path / "amo" / str(first)).read_bytes()
        assert adapter.deliver("c1", body, JournalOutputLedger(journal)) is None
        assert _adapter(tmp_path).deliver("c1", body, JournalOutputLedger(journal)) is None  # after a restart too
        assert (tmp_path / "amo" / str(first)).read_bytes() == written
        assert len(_bordereau(tmp_path)) == 1

    def test_a_crash_between_the_file_and_the_bordereau_is_made_good_once(self, tmp_path: Path, claims,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
        """The file is in place but its bordereau line is not: the retry adds the line, and only it."""
        out, journal = claims
        body = _sent_visit(out, journal)
        adapter = _adapter(tmp_path)

        def disk_full(*args: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(adapter, "_bordereau", disk_full)
        with pytest.raises(TransientDeliveryError, match="No space left"):
            adapter.deliver("c1", body, JournalOutputLedger(journal))
        monkeypatch.undo()
        assert adapter.deliver("c1", body, JournalOutputLedger(journal)) is None
        assert len(_bordereau(tmp_path)) == 1 and len(list((tmp_path / "amo").glob("claim-*.json"))) == 1

    def test_a_torn_bordereau_line_is_cut_before_the_next(self, tmp_path: Path, claims) -> None:
        """A crash mid-append leaves part of a line: the next append starts on a clean line."""
        out, journal = claims
        body = _sent_visit(out, journal)
        claim = orjson.loads(body)["entry"][0]["resource"]
        folder = tmp_path / "amo"
        folder.mkdir()
        (folder / f"bordereau-CNSS-{claim['created'][:10]}.csv").write_bytes(
            b"claim_id,version,items,total\nother,1,1,50.00\n" + claim["id"].encode()[:9])
        _adapter(tmp_path).deliver("c1", body, JournalOutputLedger(journal))
        assert [(r["claim_id"], r["version"]) for r in _bordereau(tmp_path)] == [("other", "1"), (claim["id"], "1")]

    def test_a_correction_is_the_next_file_and_line(self, tmp_path: Path, claims) -> None:
        """A late charge after submission: version 2 in its own file, naming the version it replaces."""
        out, journal = claims
        _sent_visit(out, journal)
        out.deliver("m4", dft("T3", NGAP, "C", day="2026-11-04"), JournalOutputLedger(journal),
                    headers={"message_type": "DFT^P03", "received_at": "2026-11-06T10:00:00+00:00"})
        adapter = _adapter(tmp_path)
        names = [adapter.deliver(f"c{n}", b, JournalOutputLedger(journal))
                 for n, b in enumerate(_claim_bundles(journal))]
        second = orjson.loads((tmp_path / "amo" / str(names[1])).read_bytes())
        assert str(names[1]).endswith("-v2.json") and second["claim"]["version"] == 2
        assert second["claim"]["replaces"] == f"{second['claim']['id']}/1" and second["total"] == "208.00"
        lines = [row for p in sorted((tmp_path / "amo").glob("bordereau-*.csv"))
                 for row in csv.DictReader(p.read_text().splitlines())]
        assert [(r["version"], r["items"], r["total"]) for r in lines] == [("1", "2", "158.00"), ("2", "3", "208.00")]


class TestRefusals:
    @pytest.mark.parametrize(("body", "why"), [
        (b"not json", "not JSON"),
        (b'{"resourceType": "Patient", "id": "p"}', "not a FHIR Bundle"),
        (bundle(patient()), "first entry is not a Claim"),
        (bundle({"resource": {"resourceType": "Claim", "id": "c1"}}), "no version"),
    ])
    def test_anything_but_a_claim_bundle_is_permanent_with_why(self, tmp_path: Path, body: bytes, why: str) -> None:
        """A dead letter that says what is wrong, and nothing written."""
        with pytest.raises(PermanentDeliveryError, match=why):
            _adapter(tmp_path).deliver("x", body, None)  # type: ignore[arg-type]
        assert list((tmp_path / "amo").iterdir()) == []


def test_end_to_end_a_claim_closed_by_an_operator_reaches_the_insurer_files(tmp_path: Path) -> None:
    """In a running engine: charges over REST (a FHIR transaction Bundle) open a claim; `wasla claims close`
    asks for it; the engine's claims stage closes, prices and sends it on the claims channel, whose output
    `insurer` writes its file and bordereau line."""
    token = "tok-claims-e2e-0123456789"
    port = free_port()
    project = claims_project(tmp_path, feeds="billing-rest", outputs="  - amo-files\n")
    cfg = project / "config"
    (cfg / "channels" / "billing-rest.yaml").write_text(
        f"input:\n  rest:\n    port: {port}\n    tokens:\n"
        f"      - {{name: his, sha256: {hashlib.sha256(token.encode()).hexdigest()}}}\n"
        "pipeline: {}\noutput:\n  - archive-ndjson\n")
    (cfg / "destinations" / "amo-files.yaml").write_text("description: AMO files\ninsurer:\n  path: var/out/amo\n")
    journal = Journal(f"sqlite:///{project}/var/wasla.db")
    with engine(project) as proc:
        wait_port(port, proc=proc)
        r = httpx.post(f"http://127.0.0.1:{port}/messages", content=dft("T1", NGAP, "C"), timeout=30,
                       headers={"Content-Type": "application/fhir+json", "Authorization": f"Bearer {token}"})
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not journal.claims.search():
            time.sleep(0.2)
        [row] = journal.claims.search()
        assert row.state == "open"
        closed = subprocess.run([WASLA, "claims", "close", row.id, "--yes", "--config", str(cfg)], cwd=project,
                                capture_output=True, text=True, timeout=60)
        assert closed.returncode == 0, closed.stderr
        folder = project / "var" / "out" / "amo"
        while time.monotonic() < deadline + 30 and not list(folder.glob("bordereau-*.csv")):
            time.sleep(0.2)
        [written] = folder.glob("claim-*.json")
    doc = orjson.loads(written.read_bytes())
    assert doc["claim"]["id"] == row.id and doc["total"] == "50.00" and doc["insurer"]["code"] == "CNSS"
    after = journal.claims.get(row.id)
    assert after is not None and after.status == "submitted" and after.close_reason == "operator"
    [sent] = [m for m in journal.messages.search(channel="claims-amo") if m.message_type == "FHIR^Claim"]
    assert journal.outputs.get(sent.id, "amo-files").status == "delivered"  # type: ignore[union-attr]
    journal.close()
