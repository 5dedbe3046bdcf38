"""The intake of a shipped project, opened on the journal each test asks for (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.config import ChannelConfig, load_config
from engine.pipeline.intake import Intake, Receipt
from engine.runtime import make_converter, routes_of
from engine.store import Journal, MessageRow
from engine.transport import open_transport
from tests.support import make_project


@dataclass
class Door:
    """A real `Intake` on the shipped project's `adt-mllp` channel, with the journal it writes to: sends bytes
    as a peer would and reads back the rows and intake events they left."""

    intake: Intake
    journal: Journal
    channel: ChannelConfig
    converter: Any

    def send(self, raw: bytes) -> Receipt:
        return self.intake.receive(self.channel, raw, peer="127.0.0.1:1")

    def rows(self, control_id: str = "MSG00001") -> list[MessageRow]:
        return sorted(self.journal.messages.search(control_id=control_id, limit=100), key=lambda r: r.id)

    def received(self, receipt: Receipt) -> dict[str, Any]:
        (event,) = [e for e in self.journal.messages.events(receipt.message_id) if e["stage"] == "intake"]
        return dict(event["detail"])


@pytest.fixture
def door(tmp_path: Path, store_url: str) -> Iterator[Door]:
    config = load_config(make_project(tmp_path) / "config", env={"WASLA_STORE_URL": store_url})
    journal = Journal(config.store.url)
    broker = open_transport(config.broker, routes_of(config))
    broker.declare()
    converter = make_converter(config)
    try:
        yield Door(Intake(journal, broker, converter), journal, config.channel("adt-mllp"), converter)
    finally:
        journal.close()
