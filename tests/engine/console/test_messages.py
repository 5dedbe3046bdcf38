"""A big message's page shows the first 64 KB of the raw message and of each FHIR body, with downloads of
the whole (streamed, audited); a message flagged CONTROL_ID_REUSED is marked on its page and in the list
(issue 23). On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson

from engine.config import load_config
from engine.console import PAGE_BYTES, Console
from engine.console.users import Users
from engine.formats import Formats
from engine.ops import OpsServer
from engine.pipeline.history import History
from engine.runtime import make_converter
from engine.store import Journal
from engine.types import Inbound
from tests.engine.console.support import login, served_console
from tests.support import adt, free_port, make_project


def _big_message(segments: int) -> bytes:
    base = adt("BIG-PAGE-1", "PBIG").rstrip(b"\r") + b"\r"
    return base + b"".join(b"ZBN|%d|" % n + b"|".join([b"TAILFIELD%06d" % n] * 20) + b"\r" for n in range(segments))


def _journal_big(journal: Journal) -> tuple[str, bytes, bytes]:
    mid = str(uuid.uuid4())
    raw = _big_message(9000)  # about 2 MB
    journal.messages.receive(Inbound(mid, "adt-mllp", datetime.now(UTC), raw, "ADT^A01", "BIG-PAGE-1", "SENDER"))
    bundle = orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "id": f"obs-{n}", "status": "final",
                      "valueString": f"FHIRVALUE{n:06d}"}} for n in range(3000)]})
    journal.outputs.transformed(mid, {"archive-ndjson": bundle})
    return mid, raw, bundle


class TestBigMessagePage:
    def test_the_page_shows_the_first_64_kb_and_links_the_whole(self, tmp_path: Path, store_url: str) -> None:
        """A 2 MB message with a 300 KB Bundle: a page of far less than their sum, the heads shown, the tails
        not, and a download link for each; no lineage over 1 MB."""
        project = make_project(tmp_path)
        Users(project / "config" / "users.yaml").add("ops.nuit", "operator", "correct-horse-battery")
        with served_console(project, store_url) as (base, _, journal), httpx.Client(base_url=base) as client:
            mid, raw, bundle = _journal_big(journal)
            assert len(raw) > 5 * PAGE_BYTES and len(bundle) > 3 * PAGE_BYTES
            assert login(client, "ops.nuit").status_code == 303
            page = client.get(f"/messages/{mid}")
            assert page.status_code == 200
            assert len(page.content) < 10 * PAGE_BYTES  # a row per field of the first 64 KB, the Bundle's 64 KB
            assert "TAILFIELD000003" in page.text and "TAILFIELD008999" not in page.text
            assert "FHIRVALUE000001" in page.text and "FHIRVALUE002999" not in page.text
            assert f'href="/messages/{mid}/raw"' in page.text
            assert f'href="/messages/{mid}/fhir/archive-ndjson"' in page.text
            assert 'id="no-lineage"' in page.text  # over 1 MB: not worked out for a page
            assert "3.0 MB" in page.text and "325.9 kB" in page.text  # the whole sizes, read without the bodies

    def test_downloads_give_the_whole_bodies_and_are_audited(self, tmp_path: Path, store_url: str) -> None:
        """The raw message and the Bundle download byte for byte, as attachments; each download is audited."""
        project = make_project(tmp_path)
        Users(project / "config" / "users.yaml").add("ops.nuit", "operator", "correct-horse-battery")
        with served_console(project, store_url) as (base, _, journal), httpx.Client(base_url=base) as client:
            mid, raw, bundle = _journal_big(journal)
            assert client.get(f"/messages/{mid}/raw").status_code == 303  # signed in only
            assert login(client, "ops.nuit").status_code == 303
            got = client.get(f"/messages/{mid}/raw")
            assert got.status_code == 200 and got.content == raw
            assert got.headers["content-disposition"] == f'attachment; filename="{mid}.hl7"'
            assert got.headers["cache-control"] == "no-store"
            fhir = client.get(f"/messages/{mid}/fhir/archive-ndjson")
            assert fhir.status_code == 200 and fhir.content == bundle
            assert fhir.headers["content-type"].startswith("application/fhir+json")
            assert client.get(f"/messages/{mid}/fhir/nowhere").status_code == 404
            actions = [(a["actor"], a["action"]) for a in journal.audit.records(message_id=mid)]
            assert actions == [("ops.nuit", "view-raw"), ("ops.nuit", "view-fhir")]


class TestReusedControlId:
    def test_a_reused_control_id_is_marked_in_the_list_and_on_the_page(self, tmp_path: Path,
                                                                         store_url: str) -> None:
        """The same MSH-4 + MSH-10 with other content: the second message is marked, the first is not."""
        project = make_project(tmp_path)
        Users(project / "config" / "users.yaml").add("ops.nuit", "operator", "correct-horse-battery")
        with served_console(project, store_url) as (base, _, journal), httpx.Client(base_url=base) as client:
            first, second = str(uuid.uuid4()), str(uuid.uuid4())
            since = datetime(2000, 1, 1, tzinfo=UTC)
            for mid, patient in ((first, "P1"), (second, "P2")):
                journal.messages.submit_receive(Inbound(mid, "adt-mllp", datetime.now(UTC), adt("REUSED-1", patient),
                                               "ADT^A01", "REUSED-1", "GHHSFacility"),
                                       duplicate_since=since).result(60)
            assert [r.reused_of for r in journal.messages.search(control_id="REUSED-1")] == [first, ""]
            assert login(client, "ops.nuit").status_code == 303
            listing = client.get("/messages", params={"control_id": "REUSED-1"}).text
            assert listing.count('class="flag reused"') == 1
            page = client.get(f"/messages/{second}").text
            assert 'id="reused"' in page and "CONTROL_ID_REUSED" in page and f'href="/messages/{first}"' in page
            assert 'id="reused"' not in client.get(f"/messages/{first}").text


class TestEncodingOverride:
    def test_a_message_is_shown_as_it_was_converted(self, tmp_path: Path, store_url: str) -> None:
        """cp1252 bytes from a channel with `encoding: cp1252`: the page's fields and lineage read them as
        cp1252, as the transform did, never as the Latin-1 fallback (issue 24)."""
        project = make_project(tmp_path)
        channel_file = project / "config" / "channels" / "adt-mllp.yaml"
        channel_file.write_text(channel_file.read_text().replace("    port:", "    encoding: cp1252\n    port:"))
        Users(project / "config" / "users.yaml").add("ops.nuit", "operator", "correct-horse-battery")
        config = load_config(project / "config")
        converter = make_converter(config)
        raw = (b"MSH|^~\\&|LAB|FAC|WASLA|HUB|20261201101500||ADT^A01^ADT_A01|CP-PAGE-1|P|2.5\r"
               b"EVN|A01|20261201101500\rPID|1||4711^^^FAC^MR||" + "CŒUR^ZOÉ".encode("cp1252")
               + b"||19800101|M\rPV1|1|I\r")
        journal = Journal(store_url)
        console = Console(config, journal, depths=dict, converter=converter)
        ops = OpsServer("127.0.0.1", free_port(), lambda: None, console)
        asyncio.run(ops.start())
        try:
            mid, now = str(uuid.uuid4()), datetime.now(UTC)
            journal.messages.receive(Inbound(mid, "adt-mllp", now, raw, "ADT^A01", "CP-PAGE-1", "FAC"))
            headers = {"received_at": now.isoformat(), "message_id": mid, "message_type": "ADT^A01"}
            converted = Formats(converter).of("ADT^A01").convert(raw, headers, config.channel("adt-mllp"),
                                                                 History(journal))
            journal.outputs.transformed(mid, {"archive-ndjson": converted.bundle},
                                {"mapping": converted.mapping, "version": converted.version, "warnings": []})
            (patient,) = [e["resource"] for e in orjson.loads(converted.bundle)["entry"]
                          if e["resource"]["resourceType"] == "Patient"]
            assert patient["name"][0]["family"] == "CŒUR"
            with httpx.Client(base_url=f"http://127.0.0.1:{ops.port}") as client:
                assert login(client, "ops.nuit").status_code == 303
                page = client.get(f"/messages/{mid}").text
            assert "<code>CŒUR^ZOÉ</code>" in page and "C\x8cUR" not in page
            assert 'id="lineage"' in page
        finally:
            asyncio.run(ops.stop())
            journal.close()
