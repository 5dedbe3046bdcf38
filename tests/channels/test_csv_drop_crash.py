"""kill -9 in the middle of a 200,000-row CSV file, then a restart: every good row journaled exactly once."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.channels.test_csv_drop_safety import HEADER, lab_rows
from tests.support import engine, make_project, read_log

ROWS, PER = 200_000, 25  # 8,000 groups (requests), each one message CSV^csv_lab


def _groups(db: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        rows = conn.execute("SELECT control_id, COUNT(*) FROM messages WHERE message_type = 'CSV^csv_lab'"
                            " AND status <> 'failed' GROUP BY control_id").fetchall()
    return {str(k): int(n) for k, n in rows}


def _count(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM messages WHERE message_type = 'CSV^csv_lab'").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_kill_9_mid_file_then_restart_journals_every_row_once(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    (project / "config/channels/lab-csv.yaml").write_text(
        "input:\n  csv_drop:\n    folder: var/in/lab\n    csv_map: csv_lab\n    sender: LABO-TEST\n"
        "    settle_s: 0.2\n    poll_s: 0.1\n"
        "pipeline:\n  mapping: oru_r01\noutput:\n  - archive-ndjson\n", encoding="utf-8")
    folder, db = project / "var/in/lab", project / "var/wasla.db"
    groups = ROWS // PER
    with engine(project) as proc:
        while not (folder / "done").exists():
            time.sleep(0.05)
        part = folder / ".big.part"
        part.write_text(HEADER + lab_rows(groups, per=PER), encoding="utf-8")
        part.rename(folder / "big.csv")
        deadline = time.monotonic() + 300
        while _count(db) < groups // 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    partway = sum(_groups(db).values())
    assert 0 < partway < groups, f"killed too late or too early: {partway} groups journaled"
    assert (folder / "processing/big.csv").exists()
    with engine(project, name="restarted", wait=False) as proc:  # recovery re-enqueues first
        deadline = time.monotonic() + 900
        while not (folder / "done/big.csv").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, read_log(proc)
            time.sleep(0.2)
        assert (folder / "done/big.csv").exists(), read_log(proc)
    seen = _groups(db)
    assert len(seen) == groups                                  # none missing
    assert set(seen.values()) == {1}                            # none twice
    assert set(seen) == {f"LAB-{r:07d}" for r in range(groups)}
    assert not (folder / "failed").exists() or not any((folder / "failed").iterdir())
