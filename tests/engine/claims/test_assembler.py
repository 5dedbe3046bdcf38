"""The claims stage in process, on a real journal (SQLite and PostgreSQL) and the embedded broker:
gathering, closing, netting credits, parking with reasons and release, versions, answers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from engine.claims.assembler import ClaimsOutput
from engine.config import load_config
from engine.errors import PermanentDeliveryError
from engine.pipeline.journal_ports import JournalOutputLedger
from engine.runtime import routes_of
from engine.store import Journal
from engine.transport import open_transport
from tests.engine.claims.claims_support import NABM, NGAP, bundle, claims_project, coverage, dft, encounter, patient

A03 = {"message_type": "ADT^A03", "received_at": "2026-11-05T10:00:00+00:00"}


def _at(day: int) -> dict[str, str]:
    return {"message_type": "DFT^P03", "received_at": f"2026-11-0{day}T10:00:00+00:00"}


@pytest.fixture
def stage(tmp_path: Path, store_url: str) -> Iterator[tuple[ClaimsOutput, Journal, Path]]:
    project = claims_project(tmp_path)
    config = load_config(project / "config")
    journal = Journal(store_url)
    broker = open_transport(config.broker, routes_of(config))
    out = ClaimsOutput(config.destinations["claims"], project)
    out.attach(config, journal, broker, start=False)
    yield out, journal, project
    out.close()
    journal.close()


def _send(out: ClaimsOutput, journal: Journal, n: int, body: bytes, headers: dict[str, str]) -> str | None:
    return out.deliver(f"m{n}", body, JournalOutputLedger(journal), headers=headers)


def _sent(journal: Journal) -> list[dict]:
    rows = [r for r in journal.messages.search() if r.message_type == "FHIR^Claim"]
    return [orjson.loads(journal.messages.get(r.id).raw) for r in sorted(rows, key=lambda r: r.received_at)]


def test_a_visit_is_gathered_netted_priced_and_sent_once_at_discharge(stage) -> None:
    """A visit is gathered netted priced and sent once at discharge."""
    out, journal, _ = stage
    _send(out, journal, 1, dft("T1", NGAP, "C"), _at(3))
    _send(out, journal, 2, dft("T2", NABM, "B120"), _at(3))
    _send(out, journal, 3, dft("T3", NGAP, "Z15", day="2026-11-04"), _at(4))
    _send(out, journal, 4, dft("T4", NGAP, "Z15", day="2026-11-04", kind="CD"), _at(4))  # the X-ray reversed
    assert _sent(journal) == []  # still open: nothing leaves before discharge
    loc = _send(out, journal, 5, bundle(patient(), encounter()), A03)
    [sent] = _sent(journal)
    claim = sent["entry"][0]["resource"]
    assert loc == f"Claim/{claim['id']}"
    # hand computation: C 1 × 50.00 = 50.00; B 120 × 0.90 = 108.00; Z15 credited back: nothing
    assert [(i["productOrService"]["coding"][0]["code"], i["quantity"]["value"], i["unitPrice"]["value"],
             i["net"]["value"]) for i in claim["item"]] == [("B120", 1.0, 108.0, 108.0), ("C", 1.0, 50.0, 50.0)]
    assert claim["total"] == {"value": 158.0, "currency": "MAD"}
    assert claim["use"] == "claim" and claim["type"]["coding"][0]["code"] == "institutional"
    row = journal.claims.get(claim["id"])
    assert row is not None and row.status == "submitted" and row.version == 1 and row.close_reason == "ADT^A03"
    # the same visit again: nothing new is sent
    for n, (body, h) in enumerate([(dft("T1", NGAP, "C"), _at(3)), (bundle(patient(), encounter()), A03)], 10):
        _send(out, journal, n, body, h)
    assert len(_sent(journal)) == 1


def test_a_late_charge_after_submission_is_sent_as_the_next_version(stage) -> None:
    """A late charge after submission is sent as the next version."""
    out, journal, _ = stage
    _send(out, journal, 1, dft("T1", NGAP, "C"), _at(3))
    _send(out, journal, 2, bundle(patient(), encounter()), A03)
    _send(out, journal, 3, dft("T2", NGAP, "C", day="2026-11-04"), _at(6))
    first, second = _sent(journal)
    c1, c2 = first["entry"][0]["resource"], second["entry"][0]["resource"]
    assert c1["id"] == c2["id"] and c1["total"]["value"] == 50.0 and c2["total"]["value"] == 100.0
    assert c2["related"][0]["claim"]["identifier"]["value"] == f"{c1['id']}/1" == c1["identifier"][1]["value"]
    assert journal.claims.get(c1["id"]).version == 2  # type: ignore[union-attr]


def test_an_unknown_act_parks_the_claim_and_a_tariff_row_releases_it(stage) -> None:
    """An unknown act parks the claim and a tariff row releases it."""
    out, journal, project = stage
    _send(out, journal, 1, dft("T1", NGAP, "K50"), _at(3))
    _send(out, journal, 2, bundle(patient(), encounter()), A03)
    assert _sent(journal) == []
    [row] = journal.claims.search(statuses=("parked",))
    assert [r["code"] for r in row.reasons] == ["TARIFF_MISSING"]
    assert row.reasons[0]["where"] == "item[0].productOrService"
    tariff = project / "nomenclatures" / "ma-tnr" / "tariffs.csv"
    tariff.write_text(tariff.read_text() + "K,public,13.00,2007-05-01,,test,tests only,indicative\n")
    out.tick()
    [sent] = _sent(journal)
    assert sent["entry"][0]["resource"]["total"]["value"] == 650.0  # K 50 × 13.00
    assert journal.claims.get(row.id).status == "submitted"  # type: ignore[union-attr]


def test_a_message_with_no_visit_or_account_is_refused_with_why(stage) -> None:
    """A message with no visit or account is refused with why."""
    out, journal, _ = stage
    with pytest.raises(PermanentDeliveryError, match="visit number"):
        _send(out, journal, 1, bundle(patient()), _at(3))


def test_a_claim_response_marks_its_claim(stage) -> None:
    """A claim response marks its claim."""
    out, journal, _ = stage
    _send(out, journal, 1, dft("T1", NGAP, "C"), _at(3))
    _send(out, journal, 2, bundle(patient(), encounter()), A03)
    [sent] = _sent(journal)
    cid = sent["entry"][0]["resource"]["id"]
    answer = {"resourceType": "ClaimResponse", "id": "r1", "status": "active", "outcome": "error",
              "request": {"reference": f"Claim/{cid}"}}
    _send(out, journal, 3, bundle({"resource": answer, "request": {"method": "PUT", "url": "ClaimResponse/r1"}}),
          {"message_type": "FHIR^ClaimResponse"})
    row = journal.claims.get(cid)
    assert row is not None and row.status == "rejected" and row.response_id == "m3"


def test_quiet_period_and_operator_close(tmp_path: Path, store_url: str) -> None:
    """Quiet period and operator close."""
    project = claims_project(tmp_path, extra="  close_after_s: 3600\n")
    config = load_config(project / "config")
    journal = Journal(store_url)
    out = ClaimsOutput(config.destinations["claims"], project)
    out.attach(config, journal, open_transport(config.broker, routes_of(config)), start=False)
    try:
        _send(out, journal, 1, dft("T1", NGAP, "C"), _at(3))
        [row] = journal.claims.search()
        out.tick(row.updated_at)  # not quiet for long enough
        assert journal.claims.get(row.id).status == "open"  # type: ignore[union-attr]
        out.tick(row.updated_at + timedelta(seconds=3601))
        assert journal.claims.get(row.id).status == "submitted"  # type: ignore[union-attr]
        assert journal.claims.get(row.id).close_reason == "quiet"  # type: ignore[union-attr]
        _send(out, journal, 2, dft("T9", NGAP, "C", visit="V2"), _at(3))
        other = next(r for r in journal.claims.search() if r.id != row.id)
        assert journal.claims.request(other.id, "close")
        out.tick(other.updated_at)
        assert journal.claims.get(other.id).close_reason == "operator"  # type: ignore[union-attr]
    finally:
        journal.close()


def test_wasla_check_names_a_missing_or_wrong_claims_channel(tmp_path: Path) -> None:
    """Wasla check names a missing or wrong claims channel."""
    import subprocess

    from tests.support import WASLA

    project = claims_project(tmp_path)
    dest = project / "config" / "destinations" / "claims.yaml"
    dest.write_text(dest.read_text().replace("channel: claims-amo", "channel: adt-mllp"))
    config = load_config(project / "config")
    [error] = ClaimsOutput.check_config(config.destinations["claims"], config)
    assert "must have `input: claims: {}`" in str(error) and error.file.endswith("claims.yaml")
    dest.write_text(dest.read_text().replace("channel: adt-mllp", "channel: nowhere"))
    done = subprocess.run([WASLA, "check", "--config", str(project / "config")], capture_output=True, text=True,
                          cwd=project, timeout=120)
    assert done.returncode != 0 and "claims.channel: no channel 'nowhere'" in done.stdout + done.stderr


def test_a_new_address_is_no_correction_but_a_full_credit_after_submission_cancels(stage) -> None:
    """A new address is no correction but a full credit after submission cancels."""
    out, journal, _ = stage
    _send(out, journal, 1, dft("T1", NGAP, "C"), _at(3))
    _send(out, journal, 2, bundle(patient(), encounter()), A03)
    moved = patient()
    moved["resource"]["address"] = [{"city": "Rabat"}]
    _send(out, journal, 3, bundle(moved, encounter()), _at(6))  # an A08: the Patient changes, not the claim
    assert len(_sent(journal)) == 1
    _send(out, journal, 4, dft("T2", NGAP, "C", kind="CD"), _at(7))  # the only act credited back
    first, second = _sent(journal)
    claim = second["entry"][0]["resource"]
    assert claim["id"] == first["entry"][0]["resource"]["id"] and claim["status"] == "cancelled"
    assert "item" not in claim and claim["total"]["value"] == 0.0
    assert journal.claims.get(claim["id"]).status == "cancelled"  # type: ignore[union-attr]


def test_a_claim_credited_back_before_it_is_sent_is_empty_and_says_so(stage) -> None:
    """A claim credited back before it is sent is empty and says so."""
    out, journal, _ = stage
    _send(out, journal, 1, dft("T1", NGAP, "C"), _at(3))
    _send(out, journal, 2, dft("T2", NGAP, "C", kind="CD"), _at(3))
    _send(out, journal, 3, bundle(patient(), encounter()), A03)
    assert _sent(journal) == []
    [row] = journal.claims.search()
    assert row.status == "empty" and row.reasons[0]["code"] == "NOTHING_TO_BILL"


def test_a_body_that_is_no_bundle_is_a_dead_letter_with_why(stage) -> None:
    """A body that is no bundle is a dead letter with why."""
    out, journal, _ = stage
    for body in (b"MSH|^~\\&|", b"[1, 2]"):
        with pytest.raises(PermanentDeliveryError, match="not a FHIR Bundle"):
            _send(out, journal, 1, body, _at(3))


def test_the_example_claims_configuration_passes_wasla_check(tmp_path: Path) -> None:
    """config/examples: the billing feed, the claims channel, the claims stage and the insurer's FHIR endpoint,
    copied into the shipped project, are a configuration `wasla check` accepts."""
    import shutil
    import subprocess

    from tests.support import ROOT, WASLA, make_project

    project = make_project(tmp_path)
    for kind, name in (("channels", "billing-mllp"), ("channels", "claims-amo"), ("destinations", "claims-amo"),
                       ("destinations", "amo-insurer-fhir")):
        shutil.copy(ROOT / "config" / "examples" / kind / f"{name}.yaml", project / "config" / kind / f"{name}.yaml")
    done = subprocess.run([WASLA, "check", "--config", str(project / "config")], capture_output=True, text=True,
                          cwd=project, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok: 3 channel(s), 3 destination(s)")


def test_a_decision_run_twice_by_a_retried_group_commit_publishes_once(stage, monkeypatch) -> None:
    """The journal's writer runs a work again alone when its group commit failed: the Claim of the first run
    was never journaled and must not be published."""
    out, journal, _ = stage
    published: list[str] = []
    monkeypatch.setattr(out.broker, "publish_in", lambda body, **kw: published.append(kw["message_id"]))
    real = journal.claims.decide

    def twice(cid, decide):  # type: ignore[no-untyped-def]
        row = journal.claims.get(cid)
        decide(row, journal.claims.parts(cid))  # the failed group's run: rolled back, nothing written
        return real(cid, decide)

    monkeypatch.setattr(journal.claims, "decide", twice)
    _send(out, journal, 1, dft("T1", NGAP, "C"), _at(3))
    _send(out, journal, 2, bundle(patient(), encounter()), A03)
    [sent] = [m for m in journal.messages.search() if m.message_type == "FHIR^Claim"]
    assert published == [sent.id]


def test_a_late_charge_whose_decision_died_with_the_process_is_decided_on_the_next_turn(stage) -> None:
    """A charge applied to a sent claim, then the process dies before deciding: the claim says it needs a
    decision, and the next turn (this process or another) sends the correction."""
    out, journal, _ = stage
    _send(out, journal, 1, dft("T1", NGAP, "C"), _at(3))
    _send(out, journal, 2, bundle(patient(), encounter()), A03)
    [row] = journal.claims.search()
    late = orjson.loads(dft("T2", NGAP, "C", day="2026-11-04"))["entry"][-1]
    journal.claims.apply("claims", [journal.keys.patient_key("claim:claims", "x")], row.id,
                         [(f"ChargeItem/{late['resource']['id']}", orjson.dumps(late))], message_id="m3",
                         received_at=datetime(2026, 11, 6, tzinfo=UTC))  # the keys of row's claim are not needed
    assert journal.claims.get(row.id).requested == "settle"  # type: ignore[union-attr]
    out.tick()
    assert [c["entry"][0]["resource"]["total"]["value"] for c in _sent(journal)] == [50.0, 100.0]


def test_a_claim_message_journaled_but_never_published_is_published_by_the_next_turn(stage, monkeypatch) -> None:
    """The broker fails right after the commit that journaled the Claim: the message stays `received`, and a
    turn a minute later publishes it (the intake that would recover it may run in another process)."""
    from engine.errors import BrokerError

    out, journal, _ = stage
    published: list[str] = []

    def down(body, **kw):  # type: ignore[no-untyped-def]
        raise BrokerError("broker gone")

    monkeypatch.setattr(out.broker, "publish_in", down)
    _send(out, journal, 1, dft("T1", NGAP, "C"), _at(3))
    with pytest.raises(BrokerError):
        _send(out, journal, 2, bundle(patient(), encounter()), A03)
    monkeypatch.setattr(out.broker, "publish_in", lambda body, **kw: published.append(kw["message_id"]))
    _send(out, journal, 3, bundle(patient(), encounter()), A03)  # the redelivery changes nothing
    out.tick()
    assert published == []  # not a minute old yet
    out.tick(datetime.now(UTC) + timedelta(seconds=61))
    [sent] = [m for m in journal.messages.search() if m.message_type == "FHIR^Claim"]
    assert published == [sent.id]


def test_a_message_naming_two_claims_merges_them_into_one_visit(stage) -> None:
    """A BAR with the account only, an A01 with the visit only, then a DFT naming both: one claim, one Claim."""
    out, journal, _ = stage
    account = {"fullUrl": "urn:uuid:70000000-0000-5000-8000-000000000001", "resource": {
        "resourceType": "Account", "id": "70000000-0000-5000-8000-000000000001", "status": "active",
        "identifier": [{"system": "https://fhir.wasla.ma/sid/test/an", "value": "A1"}]},
        "request": {"method": "PUT", "url": "Account/70000000-0000-5000-8000-000000000001"}}
    _send(out, journal, 1, bundle(patient(), account, *coverage()), {"message_type": "BAR^P01",
                                                                     "received_at": "2026-11-02T10:00:00+00:00"})
    _send(out, journal, 2, bundle(patient(), encounter()), {"message_type": "ADT^A01",
                                                            "received_at": "2026-11-03T09:00:00+00:00"})
    assert len(journal.claims.search()) == 2
    charge_bundle = orjson.loads(dft("T1", NGAP, "C"))
    charge_bundle["entry"].append(account)
    _send(out, journal, 3, orjson.dumps(charge_bundle), _at(3))
    [row] = journal.claims.search()
    assert {p["resource"]["resourceType"] for p in journal.claims.parts(row.id)} >= {"Account", "Coverage",
                                                                                     "ChargeItem", "Encounter"}
    _send(out, journal, 4, bundle(patient(), encounter()), A03)
    assert len(_sent(journal)) == 1


def test_two_journals_on_one_sqlite_file_decide_one_at_a_time(tmp_path: Path) -> None:
    """Two processes' journals on one SQLite file: a claim's decision holds the database's write lock from
    its first read, so neither decides on a version the other is about to change."""
    import threading

    from engine.store.claims import Decision

    url = f"sqlite:///{tmp_path}/w.db"
    one, two = Journal(url), Journal(url)
    try:
        one.claims.apply("d", ["k"], "c1", [], message_id="m", received_at=datetime(2026, 11, 3, tzinfo=UTC),
                         close="ADT^A03")
        seen: list[int] = []

        def decide(row, parts):  # type: ignore[no-untyped-def]
            seen.append(row.version)
            return Decision("submitted", content_sha=str(row.version), message_id="x", version=row.version + 1)

        threads = [threading.Thread(target=j.claims.decide, args=("c1", decide)) for j in (one, two) * 3]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(seen) == [0, 1, 2, 3, 4, 5]
        assert one.claims.get("c1").version == 6  # type: ignore[union-attr]
    finally:
        one.close()
        two.close()
