"""csv_drop against hostile and unlucky folders: links never followed, a bad file failing alone, limits with
their reasons, a file still being written, a stop in the middle of a file resumed exactly once. The channel
runs in process (its real code: folder, journal on SQLite and PostgreSQL, embedded broker)."""

from __future__ import annotations

import asyncio
import csv
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from channels.csv_drop import CSVDropInput
from channels.csv_ingest import FileIngest, Rejects, Stopped
from engine.config import ChannelConfig, load_config
from engine.mapping.csvmap import find_csvmap
from engine.pipeline.intake import Intake
from engine.runtime import make_converter, routes_of
from engine.store import Journal
from engine.store.files import Files
from engine.transport import open_transport
from tests.support import make_project

HEADER = ("numero_demande;ipp;nom;prenom;date_naissance;sexe;code_analyse;libelle_analyse;resultat;unite;normes;"
          "date_prelevement\n")


def lab_rows(requests: int, per: int = 3, start: int = 0) -> str:
    """`requests` groups of `per` good rows each (synthetic, no real person)."""
    out = []
    for r in range(start, start + requests):
        for k in range(per):
            out.append(f"LAB-{r:07d};IPP{r:07d};ZZTEST;Test;01/01/1990;F;C{k};Analyse {k};{k + 1},5;mmol/l;"
                       "1-9;21/11/2026 07:00\n")
    return "".join(out)


class Drop:
    """A csv_drop channel running in a loop thread of this process."""

    def __init__(self, project: Path, store_url: str, options: str = "") -> None:
        (project / "config/channels/lab-csv.yaml").write_text(
            "input:\n  csv_drop:\n    folder: var/in/lab\n    csv_map: csv_lab\n    sender: LABO-TEST\n"
            f"    settle_s: 0.3\n    poll_s: 0.05\n{options}"
            "pipeline:\n  mapping: oru_r01\noutput:\n  - archive-ndjson\n", encoding="utf-8")
        self.config = load_config(project / "config", env={"WASLA_STORE_URL": store_url})
        self.channel: ChannelConfig = self.config.channel("lab-csv")
        self.folder = Path(str(self.channel.input["folder"]))
        self.journal = Journal(self.config.store.url)
        self.broker = open_transport(self.config.broker, routes_of(self.config))
        self.broker.declare()
        self.broker.purge()
        self.intake = Intake(self.journal, self.broker, make_converter(self.config))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.input: CSVDropInput | None = None

    def start(self) -> None:
        self.input = CSVDropInput(self.channel, self.intake, ThreadPoolExecutor(2))
        asyncio.run_coroutine_threadsafe(self.input.start(), self.loop).result(30)

    def stop(self) -> None:
        if self.input is not None:
            asyncio.run_coroutine_threadsafe(self.input.stop(), self.loop).result(60)
            self.input = None

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
        self.broker.purge()
        self.journal.close()

    def drop(self, name: str, data: bytes) -> None:
        part = self.folder / f".{abs(hash(name))}.part"
        part.write_bytes(data)
        part.rename(self.folder / name)

    def groups(self) -> Counter[str]:
        """Journaled messages of the file's type, by control id (the group key)."""
        rows = self.journal.db.query("SELECT control_id FROM messages WHERE message_type = 'CSV^csv_lab'"
                                   " AND status <> 'failed'")
        return Counter(str(r[0]) for r in rows)

    def failed(self) -> list[str]:
        return sorted(str(r[0]) for r in self.journal.db.query("SELECT reason FROM messages WHERE status = 'failed'"))


def wait(predicate: Callable[[], object], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "p")


@pytest.fixture
def drop(project: Path, request: pytest.FixtureRequest) -> Iterator[Drop]:
    url = f"sqlite:///{project}/var/wasla.db"
    options = getattr(request, "param", "")
    d = Drop(project, url, options)
    d.start()
    try:
        yield d
    finally:
        d.close()


class TestLinks:
    def test_a_link_dropped_in_the_folder_is_not_followed(self, drop: Drop, tmp_path: Path) -> None:
        """A link to a CSV outside the folder goes to failed/ as a link; the outside file is never read."""
        outside = tmp_path / "secret.csv"
        outside.write_text(HEADER + lab_rows(1), encoding="utf-8")
        os.symlink(outside, drop.folder / "link.csv")
        wait(lambda: (drop.folder / "failed/link.csv").is_symlink())
        assert (drop.folder / "failed/link.csv.error.txt").read_text() == "a symbolic link: not read\n"
        assert not drop.groups() and not drop.failed()
        assert outside.read_text(encoding="utf-8") == HEADER + lab_rows(1)

    def test_a_link_planted_as_the_reject_file_is_not_written_through(self, drop: Drop, tmp_path: Path) -> None:
        target = tmp_path / "target.txt"
        target.write_text("keep me\n")
        os.symlink(target, drop.folder / "failed/bad.csv.rejects.csv")
        drop.drop("bad.csv", (HEADER + lab_rows(1) + "LAB-X;IPP;ZZ\n").encode())
        wait(lambda: (drop.folder / "done/bad.csv").exists())
        assert target.read_text() == "keep me\n"
        assert (drop.folder / "failed/bad.csv.rejects.csv").is_symlink()  # left as it was
        with (drop.folder / "failed/bad.csv.rejects.2.csv").open(encoding="utf-8") as fh:
            assert [r[:2] for r in csv.reader(fh)][1:] == [["5", "expected 12 columns, got 3"]]

    def test_done_replaced_by_a_link_moves_nothing_elsewhere(self, drop: Drop, tmp_path: Path) -> None:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (drop.folder / "done").rmdir()
        os.symlink(elsewhere, drop.folder / "done")
        drop.drop("a.csv", (HEADER + lab_rows(2)).encode())
        wait(lambda: sum(drop.groups().values()) == 2)
        time.sleep(0.5)
        assert list(elsewhere.iterdir()) == []
        assert (drop.folder / "processing/a.csv").is_file()  # stays until done/ is a folder again

    def test_a_link_in_processing_is_not_read_at_start(self, project: Path, tmp_path: Path) -> None:
        outside = tmp_path / "secret.csv"
        outside.write_text(HEADER + lab_rows(1), encoding="utf-8")
        d = Drop(project, f"sqlite:///{project}/var/wasla.db")
        try:
            (d.folder / "processing").mkdir(parents=True)
            os.symlink(outside, d.folder / "processing/x.csv")
            d.start()
            wait(lambda: (d.folder / "failed/x.csv").is_symlink())
            assert not d.groups()
        finally:
            d.close()


class TestBadFilesFailAlone:
    def test_a_255_byte_name_does_not_stop_the_files_after_it(self, drop: Drop) -> None:
        long = "a" * 251 + ".csv"
        assert len(long.encode()) == 255
        drop.drop(long, (HEADER + lab_rows(1, start=1)).encode())
        drop.drop("b.csv", (HEADER + lab_rows(1, start=2)).encode())
        wait(lambda: (drop.folder / "done/b.csv").exists())
        wait(lambda: (drop.folder / "done" / long).exists())
        assert drop.groups() == {"LAB-0000001": 1, "LAB-0000002": 1}

    def test_a_long_name_with_rejects_gets_a_shortened_reject_file(self, drop: Drop) -> None:
        long = "é" * 125 + ".csv"  # 254 bytes
        drop.drop(long, (HEADER + "LAB-X;IPP;ZZ\n").encode())
        wait(lambda: (drop.folder / "done" / long).exists())
        names = [p.name for p in (drop.folder / "failed").iterdir()]
        assert len(names) == 1 and names[0].endswith(".rejects.csv") and len(names[0].encode()) <= 255

    def test_a_pipe_in_the_folder_fails_alone(self, drop: Drop) -> None:
        os.mkfifo(drop.folder / "pipe.csv")
        drop.drop("ok.csv", (HEADER + lab_rows(1)).encode())
        wait(lambda: (drop.folder / "done/ok.csv").exists())
        wait(lambda: (drop.folder / "failed/pipe.csv").exists())
        assert (drop.folder / "failed/pipe.csv.error.txt").read_text() == "not a regular file: not read\n"


class TestLimits:
    @pytest.mark.parametrize("drop", ["    max_row_bytes: 67108864\n"], indirect=True)
    def test_a_header_of_a_million_columns_is_refused_with_the_reason(self, drop: Drop) -> None:
        header = ";".join(f"c{i}" for i in range(1_000_000)) + "\n"
        drop.drop("wide.csv", (header + "1;2\n").encode())
        wait(lambda: (drop.folder / "done/wide.csv").exists(), timeout=120)
        assert drop.failed() == ["wide.csv line 1: header has 1000000 columns, more than max_columns (1000)"]

    def test_two_million_columns_under_the_default_row_limit(self, drop: Drop) -> None:
        drop.drop("wide.csv", (";" * 2_000_000 + "\n1;2\n").encode())
        wait(lambda: (drop.folder / "done/wide.csv").exists(), timeout=120)
        assert drop.failed() == ["wide.csv line 1: header line longer than max_row_bytes (1048576 bytes)"]

    @pytest.mark.parametrize("drop", ["    max_row_bytes: 400\n"], indirect=True)
    def test_a_row_too_long_is_rejected_and_reading_goes_on(self, drop: Drop) -> None:
        body = lab_rows(1, start=1) + "LAB-9;" + "x" * 5000 + "\n" + lab_rows(1, start=2)
        drop.drop("long.csv", (HEADER + body).encode())
        wait(lambda: (drop.folder / "done/long.csv").exists())
        assert drop.failed() == ["long.csv line 5: row longer than max_row_bytes (400 bytes)"]
        assert drop.groups() == {"LAB-0000001": 1, "LAB-0000002": 1}

    @pytest.mark.parametrize("drop", ["    max_group_rows: 5\n"], indirect=True)
    def test_a_group_over_the_limit_is_rejected_whole_with_one_record(self, drop: Drop) -> None:
        body = lab_rows(1, per=2, start=1) + lab_rows(1, per=8, start=2) + lab_rows(1, per=2, start=3)
        drop.drop("big.csv", (HEADER + body).encode())
        wait(lambda: (drop.folder / "done/big.csv").exists())
        assert drop.groups() == {"LAB-0000001": 1, "LAB-0000003": 1}
        assert drop.failed() == ["big.csv lines 4-11: a group of 8 rows, more than max_group_rows (5) rows:"
                                 " not taken in (its rows are in the reject file)"]
        with (drop.folder / "failed/big.csv.rejects.csv").open(encoding="utf-8") as fh:
            rejects = list(csv.reader(fh))[1:]
        assert [int(r[0]) for r in rejects] == list(range(4, 12))
        assert {r[1] for r in rejects} == {"in a group of more than max_group_rows (5) rows from line 4: not taken in"}
        assert all(r[2] == "LAB-0000002" for r in rejects)


class TestGrowingFile:
    def test_rows_written_after_the_claim_are_read_none_rejected(self, drop: Drop) -> None:
        """50.5 rows, a pause past settle_s (the file is claimed), then the rest: all 100 rows taken, once."""
        data = (HEADER + lab_rows(50, per=2)).encode()
        cut = data.index(b"\n", len(data) // 2) + 20   # in the middle of a row
        path = drop.folder / "growing.csv"
        with path.open("wb") as fh:
            fh.write(data[:cut])
            fh.flush()
            wait(lambda: not path.exists())          # claimed: moved to processing/, still open here
            fh.write(data[cut:])
        wait(lambda: (drop.folder / "done/growing.csv").exists())
        assert drop.groups() == Counter({f"LAB-{r:07d}": 1 for r in range(50)})
        assert drop.failed() == []
        assert not (drop.folder / "failed/growing.csv.rejects.csv").exists()

    def test_a_file_rewritten_while_read_goes_to_failed(self, drop: Drop) -> None:
        data = (HEADER + lab_rows(4, per=2)).encode()
        path = drop.folder / "rw.csv"
        with path.open("wb") as fh:
            fh.write(data[:-10])
            fh.flush()
            wait(lambda: not path.exists())
            fh.seek(0)
            fh.write(b"X" * 20 + data[20:])
        wait(lambda: (drop.folder / "failed/rw.csv").exists())
        assert "rewritten in place" in (drop.folder / "failed/rw.csv.error.txt").read_text()


class TestResume:
    def test_a_stopped_file_resumes_exactly_once(self, project: Path, store_url: str) -> None:
        """A file stopped after some commits (as a crash leaves it: progress and rows together), then the
        channel started again: every group once, the reject file holding each bad row once."""
        d = Drop(project, store_url)
        try:
            body = "".join(lab_rows(1, per=2, start=r) + ("LAB-BAD;x\n" if r % 97 == 0 else "")
                           for r in range(1500))
            (d.folder / "processing").mkdir(parents=True)
            path = d.folder / "processing/big.csv"
            path.write_bytes((HEADER + body).encode())
            files, csvmap = Files(d.journal), find_csvmap(d.config.mappings_dir, "csv_lab",
                                                          d.config.config_dir / "schema")
            import hashlib

            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            claim = files.claim("lab-csv", sha, "big.csv", size=path.stat().st_size, mtime_ns=0, encoding="utf-8")
            stop = threading.Event()
            work = d.folder / f"processing/.{sha[:32]}.rejects"
            rejects = Rejects(lambda resume: work.open("r+b" if resume else "w+b"), list(csvmap.columns))
            commits = 0
            with path.open("rb") as fh:
                ing = FileIngest(d.channel, d.intake, csvmap, fh, "big.csv", rejects, sha256=sha, files=files,
                                 committed=claim.progress, encoding="utf-8", stop=stop)
                original = ing._commit

                def commit(*args: object, **kw: object) -> None:
                    nonlocal commits
                    commits += 1
                    if commits == 4:
                        stop.set()
                    original(*args, **kw)  # type: ignore[arg-type]

                ing._commit = commit  # type: ignore[method-assign]
                with pytest.raises(Stopped):
                    ing.finish(ing.read(None))
            rejects.close()
            partway = files.get("lab-csv", sha)
            assert partway is not None and partway.status == "processing"
            assert 0 < sum(d.groups().values()) < 1500
            d.start()
            wait(lambda: (d.folder / "done/big.csv").exists(), timeout=120)
            groups = d.groups()
            assert set(groups) == {f"LAB-{r:07d}" for r in range(1500)} and set(groups.values()) == {1}
            bad = [f for f in d.failed()]
            assert len(bad) == len(set(bad)) == 16
            with (d.folder / "failed/big.csv.rejects.csv").open(encoding="utf-8") as fh:
                lines = [r[0] for r in csv.reader(fh)][1:]
            assert len(lines) == len(set(lines)) == 16
            done = files.get("lab-csv", sha)
            assert done is not None and done.status == "done" and done.progress.messages == 1500
        finally:
            d.close()
