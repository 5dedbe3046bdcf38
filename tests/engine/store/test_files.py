"""engine.store.files: a file claimed once by its bytes, its progress written with its rows (compare-and-set)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from engine.store import Journal
from engine.store.files import FileProgress, Files


@pytest.fixture
def files(store_url: str) -> Iterator[Files]:
    journal = Journal(store_url)
    try:
        yield Files(journal.db)
    finally:
        journal.close()


def _marks(files: Files) -> int:
    return int(files.db.query("SELECT COUNT(*) FROM meta WHERE key IN (?, ?)", ("mark-1", "mark-2"))[0][0])


def _mark(files: Files, n: int) -> Any:
    """A write standing for the rows journaled with the progress."""
    sql = files.db.dialect.sql("INSERT INTO meta (key, value) VALUES (?, ?)")
    return lambda cur: cur.execute(sql, (f"mark-{n}", "x"))


class TestFiles:
    def test_a_claim_still_processing_is_returned_with_its_progress(self, files: Files) -> None:
        """Claimed again (a crash, a copy dropped again), a file being read says where it got to."""
        first = files.claim("lab", "a" * 64, "x.csv", size=100, mtime_ns=5, encoding="utf-8")
        assert first.new and first.status == "processing" and first.progress == FileProgress()
        after = FileProgress(40, 3, 12, 2, 1, 1)
        assert files.advance("lab", "a" * 64, first.progress, after, [_mark(files, 1)])
        again = files.claim("lab", "a" * 64, "y.csv", size=100, mtime_ns=5, encoding="")
        assert not again.new and again.status == "processing" and again.progress == after
        assert (again.name, again.size, again.mtime_ns, again.encoding) == ("x.csv", 100, 5, "utf-8")
        assert [c.sha256 for c in files.processing("lab", "x.csv")] == ["a" * 64]

    def test_a_stale_progress_writes_nothing(self, files: Files) -> None:
        """Two takers from the same point: the second one's rows are not journaled (exactly once)."""
        claim = files.claim("lab", "b" * 64, "x.csv", size=10, mtime_ns=0, encoding="")
        assert files.advance("lab", "b" * 64, claim.progress, FileProgress(5, 2, 0, 1, 1, 0), [_mark(files, 1)])
        assert not files.advance("lab", "b" * 64, claim.progress, FileProgress(5, 2, 0, 1, 1, 0), [_mark(files, 2)])
        assert _marks(files) == 1

    def test_a_file_that_grew_is_known_by_both_hashes_once_done(self, files: Files) -> None:
        claim = files.claim("lab", "c" * 64, "x.csv", size=10, mtime_ns=0, encoding="")
        assert files.advance("lab", "c" * 64, claim.progress, FileProgress(20, 3, 0, 2, 1, 0), status="done",
                             sha256_end="d" * 64)
        for sha in ("c" * 64, "d" * 64):
            seen = files.claim("lab", sha, "copy.csv", size=20, mtime_ns=0, encoding="")
            assert not seen.new and seen.status == "done" and seen.sha256 == "c" * 64
        assert not files.advance("lab", "c" * 64, FileProgress(20, 3, 0, 2, 1, 0), FileProgress(30, 4, 0, 3, 2, 0))
        assert files.processing("lab", "x.csv") == []
