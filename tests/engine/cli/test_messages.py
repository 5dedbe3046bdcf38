"""`wasla messages show` lists the mapping warnings of the message's latest conversion (code, field,
rule, detail) before its timeline, and never a value of the message in them (issue 22)."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from engine.config import load_config
from engine.hl7v2.er7 import parse
from engine.runtime import make_converter
from engine.store import Journal
from engine.types import Inbound
from tests.delivery_support import adt_msg, send_all
from tests.support import WASLA, engine, make_project, port_of

# Values only the message holds: none may appear in a warning line.
SECRETS = ("SECRETNAME", "ZSECRET", "IPPZ99", "IPP000001")


def _wasla(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASLA, *args, "--config", str(project / "config")], capture_output=True, text=True,
                          cwd=project, timeout=120)


def _with_zsegment(n: int, control: str) -> bytes:
    """An ADT with a Z segment no rule reads: the conversion warns FIELDS_NOT_MAPPED naming it."""
    return adt_msg(n, "A01", control, "SECRETNAME") + b"ZPI|1|ZSECRET|IPPZ99\r"


def _warning_block(stdout: str) -> list[str]:
    """The lines between the header and the timeline: the warnings heading and its items."""
    lines = stdout.splitlines()
    assert lines[1].strip().startswith("mapping warnings ("), stdout  # right under the header, first
    return [ln for ln in lines[1:] if ln.startswith("    ")]


def test_show_lists_warnings_of_a_message_converted_by_the_engine(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    journal = Journal(f"sqlite:///{project}/var/wasla.db")
    with engine(project):
        assert send_all(port_of(project), [_with_zsegment(1, "WARN-CLI-1")]) == {"AA": 1}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            rows = journal.messages.search(control_id="WARN-CLI-1")
            if rows and rows[0].status == "delivered":
                break
            time.sleep(0.1)
    (row,) = journal.messages.search(control_id="WARN-CLI-1")
    journal.close()
    shown = _wasla(project, "messages", "show", row.id)
    assert shown.returncode == 0, shown.stderr
    items = _warning_block(shown.stdout)
    zpi = [ln for ln in items if ln.split()[0] == "FIELDS_NOT_MAPPED" and "ZPI" in ln]
    assert len(zpi) == 1, shown.stdout
    assert "rule adt" in zpi[0] and "read by no rule" in zpi[0]
    for line in items:
        assert not any(s in line for s in SECRETS), line
    assert not any(s in shown.stdout for s in SECRETS)  # metadata and warnings only, no content
    assert '"warnings"' not in shown.stdout  # not repeated as raw JSON in the timeline


def test_show_lists_the_latest_conversions_warnings_only(tmp_path: Path) -> None:
    """Journaled through the journal's public API with a real conversion's warnings; a later conversion
    without warnings (a replay after the mapping was fixed) leaves none on show."""
    project = make_project(tmp_path)
    config = load_config(project / "config")
    converter = make_converter(config)
    raw = _with_zsegment(1, "WARN-CLI-2")
    now = datetime.now(UTC)
    conversion = converter.convert("adt", parse(raw.decode()), now)
    assert any(w["code"] == "FIELDS_NOT_MAPPED" and "ZPI" in w["field"] for w in conversion.warnings)
    (project / "var").mkdir(exist_ok=True)
    journal = Journal(f"sqlite:///{project}/var/wasla.db")
    mid = "01WARNCLI2"
    journal.messages.receive(Inbound(id=mid, channel="adt-mllp", received_at=now, raw=raw, message_type="ADT^A01",
                            control_id="WARN-CLI-2"))
    journal.outputs.transformed(mid, {"archive-ndjson": conversion.bundle},
                        {"mapping": "adt", "version": "1", "warnings": conversion.warnings,
                         "destinations": ["archive-ndjson"]})
    shown = _wasla(project, "messages", "show", mid)
    assert shown.returncode == 0, shown.stderr
    items = _warning_block(shown.stdout)
    assert f"mapping warnings ({len(conversion.warnings)})" in shown.stdout
    assert len(items) == len(conversion.warnings)
    assert any(ln.split()[0] == "FIELDS_NOT_MAPPED" and "ZPI" in ln for ln in items)
    assert not any(s in shown.stdout for s in SECRETS)

    journal.outputs.transformed(mid, {"archive-ndjson": conversion.bundle},
                        {"mapping": "adt", "version": "2", "warnings": [], "destinations": ["archive-ndjson"]})
    journal.close()
    again = _wasla(project, "messages", "show", mid)
    assert again.returncode == 0, again.stderr
    assert "mapping warnings" not in again.stdout and "FIELDS_NOT_MAPPED" not in again.stdout
    assert "transform" in again.stdout  # the timeline is still there
