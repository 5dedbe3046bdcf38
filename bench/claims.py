"""The claims stage's cost per message, in process: each visit is three charges (C, B120, Z15, each the
converted Bundle of a DFT^P03 with patient, visit, coverage and practitioners) then its discharge, which
closes the claim, builds it, checks it against the tariff and rules, and journals the Claim message.
Every message is applied in a transaction of its own (as the deliver stage calls it), on SQLite and on
PostgreSQL (a fresh database, dropped after).

    .venv/bin/python bench/claims.py [--visits 200]

The tariff is the tests' (TEST VALUES, not a tariff: tests/engine/claims/claims_support.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.claims.assembler import ClaimsOutput  # noqa: E402
from engine.config import load_config  # noqa: E402
from engine.pipeline.journal_ports import JournalOutputLedger  # noqa: E402
from engine.runtime import routes_of  # noqa: E402
from engine.store import Journal  # noqa: E402
from engine.transport import open_transport  # noqa: E402
from tests.engine.claims.claims_support import NABM, NGAP, bundle, claims_project, dft, encounter, patient  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def run(store: str, visits: int) -> tuple[float, int]:
    """(seconds, claims sent) for `visits` visits of four messages on the store `store`."""
    tmp = Path(tempfile.mkdtemp())
    project = claims_project(tmp)
    config = load_config(project / "config")
    url, name = f"sqlite:///{tmp}/wasla.db", ""
    if store == "postgresql":
        import psycopg

        name = f"wasla_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    journal = Journal(url)
    out = ClaimsOutput(config.destinations["claims"], project)
    out.attach(config, journal, open_transport(config.broker, routes_of(config)), start=False)
    ledger = JournalOutputLedger(journal)
    charge = {"message_type": "DFT^P03", "received_at": "2026-11-03T10:00:00+00:00"}
    discharge = {"message_type": "ADT^A03", "received_at": "2026-11-05T10:00:00+00:00"}
    bodies = [[dft(f"T{v}-{i}", system, code, visit=f"V{v}") for i, (code, system) in
               enumerate([("C", NGAP), ("B120", NABM), ("Z15", NGAP)])] + [bundle(patient(), encounter(f"V{v}"))]
              for v in range(visits)]
    start = time.perf_counter()
    for v, four in enumerate(bodies):
        for i, body in enumerate(four):
            out.deliver(f"m{v}-{i}", body, ledger, headers=charge if i < 3 else discharge)
    seconds = time.perf_counter() - start
    sent = len([m for m in journal.messages.search(limit=visits * 2) if m.message_type == "FHIR^Claim"])
    journal.close()
    if name:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return seconds, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--visits", type=int, default=200)
    args = parser.parse_args()
    import structlog

    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())  # no log lines in the timing
    print("| store | visits | messages | seconds | messages/s | ms per visit | claims sent |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for store in ("sqlite", "postgresql"):
        seconds, sent = run(store, args.visits)
        n = args.visits * 4
        print(f"| {store} | {args.visits} | {n} | {seconds:.2f} | {n / seconds:,.0f} | "
              f"{seconds / args.visits * 1000:.1f} | {sent} |")


if __name__ == "__main__":
    main()
