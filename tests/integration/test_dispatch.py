"""One MLLP channel, many message types (issue 25): ADT, ORU, VXU and SIU each converted by its own mapping, a type no
mapping takes passed on unconverted to a real MLLP remote, and the journal saying so."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from engine.store import Journal
from engine.types import Status
from tests.channels.test_mllp_sender import ack, remote, wait_status
from tests.support import adt, engine, free_port, make_project, mllp_send, msa, port_of, wait_lines, wait_port

ROOT = Path(__file__).resolve().parents[2]
ORU = (ROOT / "mappings" / "oru_r01" / "fixtures" / "two-labs-a.hl7").read_bytes().replace(b"|CTL1|", b"|ORU-1|")
SIU = (ROOT / "mappings" / "siu" / "fixtures" / "ma-siu-s12-consultation.hl7").read_bytes().replace(
    b"|RDV-20261201-0042|", b"|SIU-1|")
VXU = (ROOT / "mappings" / "vxu" / "fixtures" / "ma-pni-penta2.hl7").read_bytes().replace(
    b"|CSU-VXU-000142|", b"|VXU-1|")
ZZZ = (b"MSH|^~\\&|AGENDA|FAC|WASLA|HUB|20261201101500||ZZZ^Z01|ZZZ-1|P|2.5\r"  # a type no mapping takes
       b"PID|1||4711^^^FAC^MR||DOE^JOHN\r")


CONVERTED = ("ADT-1", "ORU-1", "VXU-1", "SIU-1")


def dispatching_project(tmp_path: Path, remote_port: int) -> Path:
    """The shipped channel with `mappings` for ADT, ORU, VXU and SIU, `unmapped_types: pass`, to NDJSON and an MLLP
    forward; and `fhir-only`, choosing by `accepts:` and passing unmapped types, to NDJSON alone."""
    project = make_project(tmp_path)
    (project / "config" / "destinations" / "lis-forward.yaml").write_text(
        f"mllp:\n  host: 127.0.0.1\n  port: {remote_port}\n  ack_timeout_s: 2\n")
    ch = project / "config" / "channels" / "adt-mllp.yaml"
    text = ch.read_text().replace("  mapping: adt\n", '  mappings:\n    "ADT^*": adt\n    "ORU^R01": oru_r01\n'
                                                       '    "VXU^V04": vxu\n    "SIU^*": siu\n'
                                                       '  unmapped_types: pass\n')
    ch.write_text(text.replace("  - archive-ndjson", "  - archive-ndjson\n  - lis-forward"))
    (project / "config" / "channels" / "fhir-only.yaml").write_text(  # no destination that forwards v2
        f"input:\n  mllp:\n    host: 127.0.0.1\n    port: {free_port()}\n"
        "pipeline:\n  unmapped_types: pass\noutput:\n  - archive-ndjson\n")
    return project


def events(project: Path, control: str) -> tuple[str, list[dict[str, object]]]:
    j = Journal(f"sqlite:///{project / 'var' / 'wasla.db'}")
    try:
        (row,) = j.messages.search(control_id=control)
        return row.reason, j.messages.events(row.id)
    finally:
        j.close()


def wait_filtered(project: Path, control: str, timeout: float = 20.0) -> str:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        j = Journal(f"sqlite:///{project / 'var' / 'wasla.db'}")
        try:
            rows = j.messages.search(control_id=control)
        finally:
            j.close()
        if rows and rows[0].status == Status.FILTERED:
            return rows[0].reason
        time.sleep(0.1)
    raise AssertionError(f"{control} not filtered after {timeout}s")


def test_adt_and_oru_converted_an_unmapped_type_forwarded_as_v2(tmp_path: Path) -> None:
    _one_channel_many_types(tmp_path, {})


def test_the_same_on_rabbitmq(tmp_path: Path, rabbitmq_url: str) -> None:
    """The unconverted message crosses the broker (wasla.out) like a Bundle does."""
    _one_channel_many_types(tmp_path, {"WASLA_BROKER_URL": rabbitmq_url})


def _one_channel_many_types(tmp_path: Path, env: dict[str, str]) -> None:
    with remote(ack("AA")) as r:
        project = dispatching_project(tmp_path, r.port)
        with engine(project, env):
            port = port_of(project)
            # the SIU and VXU fixtures ask for enhanced acknowledgment (MSH-15 AL): their commit ACK is CA
            for raw, code in ((adt("ADT-1"), "AA"), (ORU, "AA"), (VXU, "CA"), (SIU, "CA"), (ZZZ, "AA")):
                assert msa(mllp_send(port, raw))[1] == code
            assert [wait_status(project, c)[0] for c in CONVERTED + ("ZZZ-1",)] == [Status.DELIVERED] * 5
            fhir_only = int((project / "config" / "channels" / "fhir-only.yaml").read_text().split("port: ")[1]
                            .split()[0])
            wait_port(fhir_only)
            assert msa(mllp_send(fhir_only, ZZZ.replace(b"|ZZZ-1|", b"|ZZZ-2|")))[1] == "AA"
            filtered = wait_filtered(project, "ZZZ-2")
            lines = wait_lines(project, 4)
    bundles = [orjson.loads(line) for line in lines]
    kinds = sorted({e["resource"]["resourceType"] for b in bundles for e in b["entry"]}
                   & {"Encounter", "Observation", "Appointment", "Immunization"})
    assert len(bundles) == 4 and kinds == ["Appointment", "Encounter", "Immunization", "Observation"]  # no ZZZ
    forwarded = {m.split("\r")[0].split("|")[9]: m for m in r.received}
    assert sorted(forwarded) == ["ADT-1", "ORU-1", "SIU-1", "VXU-1", "ZZZ-1"]
    assert forwarded["ZZZ-1"].split("\r")[:2] == ZZZ.decode().split("\r")[:2]  # the original bytes, not a Bundle
    reason, journal = events(project, "ZZZ-1")
    assert reason == "no mapping for ZZZ^Z01"
    (passed,) = [e for e in journal if e["stage"] == "transform"]
    assert passed["status"] == Status.PASSED
    assert passed["detail"] == {"mapping": "", "version": "", "warnings": [], "destinations": ["lis-forward"],
                                "passed": "no mapping for ZZZ^Z01",
                                "not_sent": {"archive-ndjson": "takes FHIR only, and no mapping converted the message"}}
    assert [(e["status"], e["detail"]["destination"]) for e in journal if e["stage"] == "deliver"] == [
        (Status.DELIVERED, "lis-forward")]
    assert [e["detail"]["mapping"] for c in CONVERTED for e in events(project, c)[1]
            if e["stage"] == "transform"] == ["adt", "oru_r01", "vxu", "siu"]
    # a channel with no destination that forwards v2 (choosing by accepts:): filtered, the reason says why
    assert filtered == ("no mapping for ZZZ^Z01; no destination takes it: archive-ndjson: takes FHIR only, and no"
                        " mapping converted the message")
    assert len(r.received) == 5
