"""A real engine over MLLP, on SQLite and PostgreSQL (issue 23): eleven corpus messages sharing MSH-4
and MSH-10 are eleven messages, processed, ten flagged CONTROL_ID_REUSED and found by `wasla messages
search --reused`; the same message resent (as is, with \\n, with another MSH-7) stays one message."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from engine.store import Journal, MessageRow
from engine.store.journal import REUSED
from engine.types import Status
from tests.engine.pipeline.test_duplicates import ELEVEN, corpus, with_msh7
from tests.support import WASLA, engine, make_project, mllp_send, msa, port_of


def _settled(store_url: str, count: int, timeout: float = 60.0) -> list[MessageRow]:
    """The MSG00001 messages once `count` are journaled and each is final (delivered, failed …)."""
    j = Journal(store_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            rows = sorted(j.messages.search(control_id="MSG00001", limit=100), key=lambda r: r.id)
            final = len(rows) >= count and all(r.status not in Status.UNFINISHED for r in rows)
            if final or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)
    finally:
        j.close()


def test_eleven_messages_with_one_control_id_over_mllp(tmp_path: Path, store_url: str) -> None:
    project = make_project(tmp_path)
    env = {"WASLA_STORE_URL": store_url}
    with engine(project, env=env):
        port = port_of(project)
        acks = [msa(mllp_send(port, corpus(name))) for name in ELEVEN]
        assert [a[1:3] for a in acks] == [["AA", "MSG00001"]] * 11
        a01 = corpus("ADT-A01-01")
        for again in (a01, a01.replace(b"\r", b"\n"), with_msh7(a01, b"20261224120000+0100")):
            assert msa(mllp_send(port, again))[1:3] == ["AA", "MSG00001"]
        rows = _settled(store_url, 11)

    assert len(rows) == 11  # none dropped, the resends not journaled again
    first = rows[0]
    assert (first.message_type, first.reused_of, first.duplicates) == ("ADT^A01", "", 3)
    assert [r.reused_of for r in rows[1:]] == [first.id] * 10
    statuses = [r.status for r in rows]  # each went through the transform like any other message
    assert statuses.count(Status.DELIVERED) >= 9 and all(s not in Status.UNFINISHED for s in statuses), statuses

    def wasla(*args: str) -> str:
        done = subprocess.run([WASLA, "messages", *args, "--config", str(project / "config")], capture_output=True,
                              text=True, cwd=project, timeout=120, env={**os.environ, **env})
        assert done.returncode == 0, done.stderr
        return done.stdout

    found = wasla("search", "--reused").splitlines()
    assert len(found) == 10 and all(f"[{REUSED}]" in line for line in found)
    assert {line.split()[0] for line in found} == {r.id for r in rows[1:]}
    (dup,) = wasla("search", "--duplicated").splitlines()
    assert dup.startswith(first.id) and "[DUPLICATES=3]" in dup
    shown = wasla("show", rows[4].id)
    assert f"{REUSED}: an earlier message had this sender and control id, with other content: {first.id}" in shown
    shown = wasla("show", first.id)
    assert "sent again 3 time(s) with the same content" in shown
    assert len(re.findall(r"^  \S+  intake +duplicate ", shown, re.MULTILINE)) == 3
