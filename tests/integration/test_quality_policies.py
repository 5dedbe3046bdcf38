"""A channel's data-quality policies, end to end: unmapped local codes (park: held, visible, delivered by
itself once mapped; reject; pass) and invalid national identifiers (reject)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import orjson

from engine.store import Journal, MessageRow
from engine.types import Status
from tests.support import ROOT, WASLA, engine, free_port, make_project, mllp_send, msa, out_lines, wait_lines, wait_port

LOCAL = (ROOT / "mappings/oru_r01/fixtures/ma-labo-codes-locaux.hl7").read_bytes()   # GLY…, and VITD-X unmapped
MAPPED = (ROOT / "mappings/oru_r01/fixtures/ma-labo-3-groupes.hl7").read_bytes()     # LOINC already


def _lab_channel(project: Path, policy: str) -> int:
    port = free_port()
    (project / "config/channels/lab-mllp.yaml").write_text(
        "description: lab results over MLLP\n"
        f"input:\n  mllp:\n    host: 127.0.0.1\n    port: {port}\n"
        f"pipeline:\n  mapping: oru_r01\n  unmapped_codes: {policy}\n"
        "output:\n  - archive-ndjson\n", encoding="utf-8")
    return port


def _wasla(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASLA, "nomenclature", *args, "--config", str(project / "config")], cwd=project,
                          capture_output=True, text=True, timeout=60)


def _row(project: Path, control_id: str) -> MessageRow:
    j = Journal(f"sqlite:///{project}/var/wasla.db")
    try:
        (row,) = j.messages.search(control_id=control_id)
        return row
    finally:
        j.close()


def _status(project: Path, control_id: str) -> str:
    return _row(project, control_id).status


def _wait_status(project: Path, control_id: str, status: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _status(project, control_id)
        if found == status:
            return found
        time.sleep(0.1)
    return _status(project, control_id)


def _observation_codes(line: bytes) -> list[list[str]]:
    bundle = orjson.loads(line)
    return [[f"{c['system'].rsplit('/', 1)[-1]}|{c['code']}" for c in e["resource"]["code"]["coding"]]
            for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]


def test_parked_until_mapped_then_delivered_by_itself(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    port = _lab_channel(project, "park")
    with engine(project) as proc:
        wait_port(port, proc=proc)
        assert msa(mllp_send(port, LOCAL))[1] == "CA"      # MSH-15 AL: commit accept, once journaled
        assert msa(mllp_send(port, MAPPED))[1] == "CA"
        assert _wait_status(project, "LAB-20261120-0042", Status.DELIVERED) == Status.DELIVERED
        assert _wait_status(project, "LAB-20261121-0007", Status.PARKED) == Status.PARKED
        assert len(out_lines(project)) == 1                 # only the message whose codes are all known

        listing = _wasla(project, "unmapped")
        assert listing.returncode == 0, listing.stderr
        (row,) = [ln.split() for ln in listing.stdout.splitlines() if "VITD-X" in ln]
        assert row[:4] == ["local-labo-al-amal", "VITD-X", "LABO-AL-AMAL", "1"]

        added = _wasla(project, "map", "local-labo-al-amal", "VITD-X", "62292-8",
                       "--display", "25-Hydroxyvitamin D2+D3 [Mass/volume] in Serum or Plasma")
        assert added.returncode == 0, added.stderr
        lines = wait_lines(project, 2)
        assert len(lines) == 2, (project / "engine.log").read_text()
        assert _observation_codes(lines[1])[3] == ["labo-al-amal|VITD-X", "loinc.org|62292-8"]
        assert _wait_status(project, "LAB-20261121-0007", Status.DELIVERED) == Status.DELIVERED
        assert _wasla(project, "unmapped").stdout.strip() == "no parked messages"
        assert proc.poll() is None


def test_reject_fails_the_message_with_the_codes(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    port = _lab_channel(project, "reject")
    with engine(project) as proc:
        wait_port(port, proc=proc)
        mllp_send(port, LOCAL)
        assert _wait_status(project, "LAB-20261121-0007", Status.FAILED) == Status.FAILED
        assert _row(project, "LAB-20261121-0007").reason == \
            "local codes without a national mapping: local-labo-al-amal VITD-X"
        assert proc.poll() is None


def test_pass_delivers_with_the_local_coding_only(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    port = _lab_channel(project, "pass")
    with engine(project):
        wait_port(port)
        mllp_send(port, LOCAL)
        (line,) = wait_lines(project, 1)
        assert _observation_codes(line)[3] == ["labo-al-amal|VITD-X"]


def test_an_invalid_identifier_fails_the_message_under_reject(tmp_path: Path) -> None:
    """A French INS NIR with a wrong key (format certain: P) fails the message; the reason names the system only."""
    project = make_project(tmp_path)
    ch = project / "config/channels/adt-mllp.yaml"
    ch.write_text(ch.read_text().replace("  mapping: adt", "  mapping: adt\n  invalid_identifiers: reject"))
    good = (ROOT / "mappings/adt/fixtures/ma-chu-admission.hl7").read_bytes()
    bad = good.replace(b"~AB123456^^^MA-DGSN^NNMAR", b"~285027512345600^^^ASIP-SANTE-INS-NIR^INS")
    with engine(project) as proc:
        from tests.support import port_of

        mllp_send(port_of(project), bad)
        assert _wait_status(project, "MSG00001", Status.FAILED) == Status.FAILED
        assert _row(project, "MSG00001").reason == "identifiers that fail their format or check digits: ins-nir"
        assert proc.poll() is None


def test_park_holds_an_unknown_hl7_table_code_until_its_map_has_it(tmp_path: Path) -> None:
    """`unmapped_codes: park` applies to HL7 table codes too (issue 22): PV1-2 `L` is in no row of
    v2-0004.encounter-class, so the admission is parked, shown with its map and code, and goes through by
    itself once the hospital adds the row to nomenclatures/hl7v2-fhir/ (hot reload)."""
    project = make_project(tmp_path)
    ch = project / "config/channels/adt-mllp.yaml"
    ch.write_text(ch.read_text().replace("  mapping: adt", "  mapping: adt\n  unmapped_codes: park"))
    admission = (ROOT / "mappings/adt/fixtures/ma-chu-admission.hl7").read_bytes().replace(b"PV1|1|I|", b"PV1|1|L|")
    with engine(project) as proc:
        from tests.support import port_of

        mllp_send(port_of(project), admission)
        assert _wait_status(project, "MSG00001", Status.PARKED) == Status.PARKED
        assert "v2-0004.encounter-class L" in _row(project, "MSG00001").reason
        assert out_lines(project) == []
        vocab = project / "nomenclatures/hl7v2-fhir/v2-0004.encounter-class.csv"
        vocab.write_text(vocab.read_text(encoding="utf-8").rstrip("\n")
                         + "\nL,http://terminology.hl7.org/CodeSystem/v3-ActCode,IMP,inpatient encounter\n",
                         encoding="utf-8")
        (line,) = wait_lines(project, 1)
        (enc,) = [e["resource"] for e in orjson.loads(line)["entry"] if e["resource"]["resourceType"] == "Encounter"]
        assert enc["class"]["code"] == "IMP"
        assert _wait_status(project, "MSG00001", Status.DELIVERED) == Status.DELIVERED
        assert proc.poll() is None


def test_park_holds_an_unknown_pni_vaccine_code_until_the_set_has_it(tmp_path: Path) -> None:
    """A vaccination coded `VPH9^…^PNI`, a code the PNI set (nomenclatures/ma-pni-vaccins) does not have yet, on a
    channel with `unmapped_codes: park`: parked with the set and the code, then delivered by itself with the
    CVX and ATC codings once the set's codes.csv has the row (hot reload)."""
    project = make_project(tmp_path)
    ch = project / "config/channels/adt-mllp.yaml"
    ch.write_text(ch.read_text().replace("  mapping: adt", "  mapping: vxu\n  unmapped_codes: park"))
    vxu = (ROOT / "mappings/vxu/fixtures/ma-pni-penta2.hl7").read_bytes().replace(
        b"102^DTP-Hib-Hep B^CVX^PENTA^Pentavalent DTC-Hib-HB^PNI", b"VPH9^Papillomavirus 9-valent^PNI")
    with engine(project) as proc:
        from tests.support import port_of

        mllp_send(port_of(project), vxu)
        assert _wait_status(project, "CSU-VXU-000142", Status.PARKED) == Status.PARKED
        assert "ma-pni-vaccins VPH9" in _row(project, "CSU-VXU-000142").reason
        assert out_lines(project) == []
        codes = project / "nomenclatures/ma-pni-vaccins/codes.csv"
        row = 'VPH9,Papillomavirus humain 9-valent,165,HPV9,J07BM03,"papillomavirus, 9 types",S,test row'
        codes.write_text(codes.read_text(encoding="utf-8").rstrip("\n") + f"\n{row}\n", encoding="utf-8")
        (line,) = wait_lines(project, 1)
        (imm,) = [e["resource"] for e in orjson.loads(line)["entry"]
                  if e["resource"]["resourceType"] == "Immunization"]
        assert [(c["system"].rsplit("/", 1)[-1], c["code"]) for c in imm["vaccineCode"]["coding"]] == [
            ("ma-pni-vaccin", "VPH9"), ("cvx", "165"), ("atc", "J07BM03")]
        assert _wait_status(project, "CSU-VXU-000142", Status.DELIVERED) == Status.DELIVERED
        assert proc.poll() is None
