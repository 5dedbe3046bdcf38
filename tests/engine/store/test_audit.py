"""The audit trail: viewing a message's content records exactly one AuditEvent with the user, before the
content is shown; replays are recorded; the export is valid FHIR R4 AuditEvent."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine.store import Journal
from tests.delivery_support import adt_msg, send_all
from tests.support import TOOLS, WASLA, engine, make_project, port_of


def _wasla(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASLA, *args, "--config", str(project / "config")], capture_output=True, text=True,
                          cwd=project, timeout=120)


def test_viewing_content_is_audited_once_with_the_user(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    with engine(project):
        assert send_all(port_of(project), [adt_msg(1, "A01", "AU1", "SECRETNAME")]) == {"AA": 1}
    journal = Journal(f"sqlite:///{project}/var/wasla.db")
    (row,) = journal.messages.search(control_id="AU1")
    meta = _wasla(project, "messages", "show", row.id)
    assert meta.returncode == 0 and "SECRETNAME" not in meta.stdout  # metadata only: not audited
    assert journal.audit.records(message_id=row.id) == []

    shown = _wasla(project, "messages", "show", row.id, "--raw", "--by", "dr.alaoui")
    assert shown.returncode == 0 and "SECRETNAME" in shown.stdout
    (record,) = journal.audit.records(message_id=row.id)
    assert (record["actor"], record["action"], record["source"].startswith("cli@")) == ("dr.alaoui", "view-raw", True)

    fhir = _wasla(project, "messages", "show", row.id, "--fhir", "archive-ndjson", "--by", "dr.alaoui")
    assert '"resourceType":"Bundle"' in fhir.stdout
    replay = _wasla(project, "messages", "replay", row.id, "--no-wait", "--by", "ops.night")
    assert replay.returncode == 0
    actions = [(r["actor"], r["action"]) for r in journal.audit.records(message_id=row.id)]
    assert actions == [("dr.alaoui", "view-raw"), ("dr.alaoui", "view-fhir"), ("ops.night", "replay")]
    journal.close()

    export = _wasla(project, "audit", "export")
    events = [json.loads(line) for line in export.stdout.splitlines()]
    assert [e["subtype"][0]["code"] for e in events] == ["view-raw", "view-fhir", "replay"]
    assert events[0]["agent"][0]["who"]["identifier"]["value"] == "dr.alaoui"
    assert events[0]["entity"][0]["what"]["identifier"]["value"] == row.id
    assert events[0]["type"]["code"] == "110110" and events[0]["action"] == "R"
    again = [json.loads(line) for line in _wasla(project, "audit", "export").stdout.splitlines()]
    assert [e["id"] for e in again[:3]] == [e["id"] for e in events]  # deterministic ids
    assert again[3]["subtype"][0]["code"] == "export"  # the first export was itself recorded
    if not (TOOLS / "fhir-validate").exists():
        pytest.skip(f"{TOOLS} is absent: fhir-validate comes with ../shared")
    out = tmp_path / "audit"
    out.mkdir()
    for n, e in enumerate(again):
        (out / f"{n}.json").write_text(json.dumps(e))
    checked = subprocess.run([str(TOOLS / "fhir-validate"), str(out)], capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_an_operators_claim_request_names_the_claim_in_its_audit_event(tmp_path: Path) -> None:
    """claim-close / claim-release: the AuditEvent names the claim (its Claim identifier), and the Claim
    message when one was sent; the action is an execution (E) of application activity."""
    from engine.ids import namespace
    from engine.store.audit import audit_event

    journal = Journal(f"sqlite:///{tmp_path}/j.db")
    try:
        journal.audit.record("ops.nuit", "claim-release", [""], "10.0.0.5", {"claim": "c-1", "via": "console"})
        journal.audit.record("ops.nuit", "claim-close", ["m-9"], "cli@h", {"claim": "c-2"})
        ns = namespace("https://fhir.wasla.ma")
        first, second = (audit_event(r, "https://fhir.wasla.ma", ns) for r in journal.audit.records())
    finally:
        journal.close()
    assert [e["what"]["identifier"] for e in first["entity"]] == [
        {"system": "https://fhir.wasla.ma/sid/ma/claim", "value": "c-1"}]
    assert [e["what"]["identifier"]["value"] for e in second["entity"]] == ["m-9", "c-2"]
    assert (first["type"]["code"], first["action"], second["subtype"][0]["code"]) == ("110100", "E", "claim-close")
