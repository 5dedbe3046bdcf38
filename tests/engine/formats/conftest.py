"""A project with one channel per input format, two of them with an encoding override, and its formats."""

from __future__ import annotations

import pytest

from engine.config import Config, load_config
from engine.formats import Formats
from engine.runtime import make_converter
from tests.support import free_port, make_project


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """adt-mllp (cp1252 override), lab-mllp (ORU, no override), lab-csv (cp1252 files), fhir-rest."""
    project = make_project(tmp_path_factory.mktemp("formats"))
    channels = project / "config" / "channels"
    adt = channels / "adt-mllp.yaml"
    adt.write_text(adt.read_text().replace("    port:", "    encoding: cp1252\n    port:"), encoding="utf-8")
    (channels / "lab-mllp.yaml").write_text(
        f"input:\n  mllp:\n    host: 127.0.0.1\n    port: {free_port()}\n"
        "pipeline:\n  mapping: oru_r01\noutput:\n  - archive-ndjson\n", encoding="utf-8")
    (channels / "lab-csv.yaml").write_text(
        "input:\n  csv_drop:\n    folder: var/in/lab\n    csv_map: csv_lab\n    sender: LABO-AL-AMAL\n"
        "    encoding: cp1252\npipeline:\n  mapping: oru_r01\noutput:\n  - archive-ndjson\n", encoding="utf-8")
    (channels / "fhir-rest.yaml").write_text(
        f"input:\n  rest:\n    port: {free_port()}\n    tokens:\n      - {{name: his, sha256: {'a' * 64}}}\n"
        "pipeline:\n  mapping: adt\noutput:\n  - archive-ndjson\n", encoding="utf-8")
    return load_config(project / "config")


@pytest.fixture(scope="module")
def formats(config: Config) -> Formats:
    return Formats(make_converter(config))


class Remembers:
    """A `Memory` that remembers nothing and records what was written."""

    def __init__(self) -> None:
        self.written: list[tuple[str, bytes]] = []

    def lookup(self, patient_key: str, message_id: str, received_at: object) -> None:
        return None

    def wrote(self, patient_key: str, bundle: bytes) -> None:
        self.written.append((patient_key, bundle))

