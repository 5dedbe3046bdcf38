"""The SQLite dialect: WAL checkpoints off the commit path."""

from __future__ import annotations

from engine.store import Journal
from tests.engine.store.support import inbound


class TestWalBounded:
    def test_the_sqlite_wal_stays_bounded_under_steady_writes_and_reads(self, tmp_path: object) -> None:
        """Found by the soak: with writes arriving all the time and readers reading, PASSIVE checkpoints
        never let SQLite start the WAL over, and it grew without end (1.2 GB after 17,000 messages).
        Past the threshold a TRUNCATE checkpoint empties it."""
        import os
        import threading
        import time

        j = Journal(f"sqlite:///{tmp_path}/wasla.db")
        wal = f"{tmp_path}/wasla.db-wal"
        stop = threading.Event()
        checkpointer = threading.Thread(target=j.db.dialect._checkpoints, args=(j.db._closing,),  # type: ignore[attr-defined]
                                        kwargs={"every_s": 0.05, "wal_max_bytes": 1 << 20})

        def read() -> None:
            while not stop.is_set():
                j.messages.counts()

        reader = threading.Thread(target=read)
        checkpointer.start()
        reader.start()
        sizes: list[int] = []
        try:
            body = os.urandom(4000)
            for n in range(3000):  # 12 MB of bodies (about 40 MB of WAL pages), written while the reader reads
                j.messages.receive(inbound(raw=body + n.to_bytes(4, "big")))
                if n % 20 == 0 and os.path.exists(wal):
                    sizes.append(os.path.getsize(wal))
            time.sleep(0.5)  # the next checkpoint rounds, with the traffic over
            settled = os.path.getsize(wal)
        finally:
            stop.set()
            j.db._closing.set()
            reader.join(10)
            checkpointer.join(30)
            j.close()
        # PASSIVE only: the file never shrinks while traffic flows (SQLite reuses it from the start only
        # when a write begins after a complete checkpoint) and ends as large as it ever was.
        emptied = sum(1 for a, b in zip(sizes, sizes[1:], strict=False) if b < a)
        assert emptied >= 2, sizes
        assert settled <= 1 << 20, settled
