"""The console in a real browser (Debian chromium, headless, driven by Playwright): log in, watch the
dashboard count messages as they flow, search by control id, open a message (audited once), replay it,
switch to Arabic (right to left). Screenshots go to tests/artifacts/console/ (WASLA_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from engine.console.users import Users
from engine.store import Journal
from tests.delivery_support import adt_msg, send_all
from tests.support import ROOT, engine, make_project, ops_port, port_of

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("WASLA_TEST_ARTIFACTS", ROOT / "tests" / "artifacts")) / "console"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (.ci/run installs Debian's chromium)")
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def test_operator_journey_in_a_real_browser(tmp_path: Path, browser: object) -> None:
    project = make_project(tmp_path)
    users = Users(project / "config" / "users.yaml")
    users.add("ops.nuit", "operator", "correct-horse-battery")
    users.add("lecteur", "viewer", "staple-battery-horse")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with engine(project):
        base = f"http://127.0.0.1:{ops_port(project)}"
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(base + "/")
        assert page.url.endswith("/login")
        page.fill("#user", "ops.nuit")
        page.fill("#password", "wrong password")
        page.click("#sign-in")
        assert page.is_visible("#login-error")
        page.fill("#user", "ops.nuit")
        page.fill("#password", "correct-horse-battery")
        page.click("#sign-in")
        page.wait_for_selector("#channel-adt-mllp")

        flow = threading.Thread(target=lambda: send_all(port_of(project), [
            adt_msg(n, "A01", f"UI-{n}", "ELFASSI") for n in range(12)]))
        flow.start()  # messages arrive while the dashboard is open: it counts them by itself
        # expect() polls with locators: the console's CSP forbids the eval that wait_for_function needs
        expect(page.locator("#channel-adt-mllp .n.delivered")).to_have_text("12", timeout=30_000)
        flow.join()
        assert page.text_content("#channel-adt-mllp .n.received") == "12"
        # read from the journal: right whichever process delivered
        expect(page.locator("#destination-archive-ndjson .n.delivered")).to_have_text("12", timeout=10_000)
        assert "alert" not in (page.get_attribute("#channel-adt-mllp", "class") or "")
        assert page.locator("#channel-adt-mllp svg.spark polyline").count() == 1
        page.screenshot(path=str(ARTIFACTS / "1-dashboard.png"), full_page=True)

        page.goto(base + "/channels/adt-mllp")
        assert page.get_attribute("#validity", "class") == "valid"
        chan = project / "config" / "channels" / "adt-mllp.yaml"
        good = chan.read_text()
        chan.write_text(good.replace("mapping: adt", "mapping: adtt"))  # an edit not loaded yet, and wrong
        page.reload()
        assert "no mapping 'adtt'" in page.text_content("#validity")
        assert "adt-mllp.yaml:" in page.text_content("#validity")  # file:line, as wasla check says
        chan.write_text(good)

        page.click("#nav-messages")
        page.fill("#control-id", "UI-7")
        page.click("#search")
        rows = page.locator("#results tbody tr")
        assert rows.count() == 1
        rows.first.locator("a").click()
        page.wait_for_selector("#raw")
        assert "patient name" in page.text_content("#raw")  # field names from hl7apy's reference
        assert "ELFASSI" in page.text_content("#raw")
        assert page.text_content("#status") == "livrés"
        lineage = page.text_content("#lineage")  # each element with the fields it came from, as --explain
        assert "name[0]" in lineage and "PID-5" in lineage
        page.screenshot(path=str(ARTIFACTS / "2-message.png"), full_page=True)
        journal = Journal(f"sqlite:///{project}/var/wasla.db")
        (row,) = journal.messages.search(control_id="UI-7")
        views = journal.audit.records(message_id=row.id)
        assert [(v["actor"], v["action"]) for v in views] == [("ops.nuit", "view")]  # exactly one

        page.click("#replay")
        page.wait_for_selector("#flash")
        assert "Rejeu demandé" in page.text_content("#flash")
        def after_replay() -> list[tuple[str, str]]:
            stages = [(e["stage"], e["status"]) for e in journal.messages.events(row.id)]
            return stages[stages.index(("replay", "started")) + 1:] if ("replay", "started") in stages else []

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and ("deliver", "delivered") not in after_replay():
            time.sleep(0.2)
        assert after_replay() == [("transform", "transformed"), ("deliver", "delivered")]  # mapped and sent again
        assert [a["action"] for a in journal.audit.records(message_id=row.id)] == ["view", "replay", "view"]

        page.click("#lang-ar")
        page.wait_for_selector("html[dir=rtl]")
        assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
        assert page.text_content("#replay") == "إعادة التشغيل"
        page.screenshot(path=str(ARTIFACTS / "3-message-ar.png"), full_page=True)

        viewer = browser.new_page()  # type: ignore[attr-defined]
        viewer.goto(base + "/login")
        viewer.fill("#user", "lecteur")
        viewer.fill("#password", "staple-battery-horse")
        viewer.click("#sign-in")
        viewer.goto(f"{base}/messages/{row.id}")
        assert viewer.locator("#replay").count() == 0  # a viewer reads, an operator replays
        forged = httpx.post(f"{base}/messages/{row.id}/replay", data={"csrf": "guess"}, follow_redirects=False)
        assert forged.status_code == 303 and forged.headers["location"] == "/login"  # no session, no replay
        cookies = {c["name"]: c["value"] for c in page.context.cookies()}  # the operator's own session...
        replays = len(journal.audit.records(message_id=row.id))
        cross = httpx.post(f"{base}/messages/{row.id}/replay", data={"csrf": "guess"}, cookies=cookies,
                           follow_redirects=False)
        assert cross.status_code == 303 and cross.headers["location"] == f"/messages/{row.id}"
        assert len(journal.audit.records(message_id=row.id)) == replays  # ...without its CSRF token: refused
        journal.close()


def test_dead_letters_bulk_replay_and_channel_page(tmp_path: Path, browser: object, rabbitmq_url: str) -> None:
    """Messages an AMQP destination cannot route land in the dead letters; once a queue is bound, an
    operator replays them all from the console. The channel page shows its YAML and converts a pasted
    message without sending it."""
    import uuid

    import pika

    from channels.amqp import _pika_url

    exchange, queue = f"ext-{uuid.uuid4().hex[:8]}", f"ext-q-{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(pika.URLParameters(_pika_url(rabbitmq_url)))
    ch = conn.channel()
    ch.exchange_declare(exchange, "topic", durable=True)
    project = make_project(tmp_path)
    (project / "config" / "destinations" / "claims.yaml").write_text(
        f"amqp:\n  url: {rabbitmq_url}\n  exchange: {exchange}\nretry:\n  attempts: 1\n  delays_s: [1]\n")
    chan = project / "config" / "channels" / "adt-mllp.yaml"
    chan.write_text(chan.read_text().replace("  - archive-ndjson\n", "  - archive-ndjson\n  - claims\n"))
    Users(project / "config" / "users.yaml").add("ops.nuit", "operator", "correct-horse-battery")
    try:
        with engine(project):
            base = f"http://127.0.0.1:{ops_port(project)}"
            assert send_all(port_of(project), [adt_msg(n, "A01", f"DL-{n}", "X") for n in range(3)]) == {"AA": 3}
            journal = Journal(f"sqlite:///{project}/var/wasla.db")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(journal.outputs.dead_letters("claims")) < 3:
                time.sleep(0.2)
            page = browser.new_page()  # type: ignore[attr-defined]
            page.goto(base + "/login")
            page.fill("#user", "ops.nuit")
            page.fill("#password", "correct-horse-battery")
            page.click("#sign-in")
            page.wait_for_selector("#channel-adt-mllp.alert")  # failed messages: the channel is red
            page.click("#nav-dead")
            assert page.locator("#dead-claims tbody tr").count() == 3
            assert "routes key" in page.text_content("#dead-claims")  # the reason, at a glance
            page.screenshot(path=str(ARTIFACTS / "4-dead-letters.png"), full_page=True)

            ch.queue_declare(queue, durable=True)  # the cause, fixed: someone listens now
            ch.queue_bind(queue, exchange, "#")
            page.click("#replay-all-claims")
            page.wait_for_selector("#flash")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and journal.messages.counts().get("delivered", 0) < 3:
                time.sleep(0.2)
            assert journal.messages.counts() == {"delivered": 3}
            assert ch.queue_declare(queue, passive=True).method.message_count == 3  # once each
            page.reload()
            assert page.locator("#dead-claims tbody tr").count() == 0

            page.goto(base + "/channels/adt-mllp")
            assert "mapping: adt" in page.text_content("#yaml")
            page.fill("#test-message", adt_msg(1, "A01", "TRY-1", "ESSAI").decode().replace("\r", "\n"))
            page.click("#test-convert")
            assert '"resourceType": "Patient"' in page.text_content("#test-bundle")
            page.fill("#test-message", "not HL7 at all")
            page.click("#test-convert")
            assert "MSH" in page.text_content("#test-error")
            assert journal.messages.search(control_id="TRY-1") == []  # a try is not a message
            page.screenshot(path=str(ARTIFACTS / "5-channel.png"), full_page=True)
            journal.close()
    finally:
        ch.queue_delete(queue)
        ch.exchange_delete(exchange)
        conn.close()


def test_message_page_shows_mapping_warnings_first(tmp_path: Path, browser: object) -> None:
    """A message whose conversion warned (a Z segment no rule reads: FIELDS_NOT_MAPPED) shows the warning's
    code, field and rule at the top of its page, before its content, labelled in each language, and no value
    of the message in the warning (issue 22)."""
    project = make_project(tmp_path)
    Users(project / "config" / "users.yaml").add("ops.nuit", "operator", "correct-horse-battery")
    warned = adt_msg(3, "A01", "WARN-UI-1", "SECRETNAME") + b"ZPI|1|ZSECRET|IPPZ99\r"
    with engine(project):
        base = f"http://127.0.0.1:{ops_port(project)}"
        assert send_all(port_of(project), [warned]) == {"AA": 1}
        journal = Journal(f"sqlite:///{project}/var/wasla.db")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and [r.status for r in journal.messages.search(control_id="WARN-UI-1")] != [
                "delivered"]:
            time.sleep(0.1)
        (row,) = journal.messages.search(control_id="WARN-UI-1")
        journal.close()
        page = browser.new_page(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
        page.goto(base + "/login")
        page.fill("#user", "ops.nuit")
        page.fill("#password", "correct-horse-battery")
        page.click("#sign-in")
        page.wait_for_selector("#nav-messages")
        page.goto(f"{base}/messages/{row.id}")
        page.wait_for_selector("#warnings")
        rows = page.locator("#warnings-table tbody tr")
        cells = [[c.strip() for c in rows.nth(i).locator("td").all_text_contents()] for i in range(rows.count())]
        zpi = [c for c in cells if c[0] == "FIELDS_NOT_MAPPED" and "ZPI" in c[2]]
        assert len(zpi) == 1, cells
        assert zpi[0][1] == "Champs renseignés qu'aucune règle ne lit" and zpi[0][3] == "adt"
        warnings_text = page.text_content("#warnings") or ""
        assert "Avertissements de conversion (" in warnings_text
        for secret in ("SECRETNAME", "ZSECRET", "IPPZ99", "IPP000003"):
            assert secret not in warnings_text
        assert "ZSECRET" in (page.text_content("#raw") or "")  # the content is on the page, below, not in it
        first = page.evaluate(  # at the top: before the content, and on screen without scrolling
            "[...document.querySelectorAll('#warnings, #raw, #timeline')].map(e => e.id)")
        assert first[0] == "warnings", first
        box = page.locator("#warnings").bounding_box()
        assert box is not None and box["y"] + 60 < 800
        page.screenshot(path=str(ARTIFACTS / "6-message-warnings.png"), full_page=True)
        page.click("#lang-en")
        page.wait_for_selector("html[lang=en]")
        assert "Mapping warnings (" in (page.text_content("#warnings h2") or "")
        assert "Valued fields that no rule reads" in (page.text_content("#warnings-table") or "")
        page.click("#lang-ar")
        page.wait_for_selector("html[dir=rtl]")
        assert "تحذيرات التحويل" in (page.text_content("#warnings h2") or "")
        assert "FIELDS_NOT_MAPPED" in (page.text_content("#warnings-table") or "")
        page.screenshot(path=str(ARTIFACTS / "7-message-warnings-ar.png"), full_page=True)
