"""The format of a journaled message is found by its type's prefix in one table, and intake journals the
patient key each format gives: the same keys as before the formats existed (issue 24)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.config import Config
from engine.formats import Formats, format_name
from engine.formats.csv import CsvFormat
from engine.formats.fhir import FhirFormat
from engine.formats.hl7v2 import Hl7v2Format
from engine.pipeline.intake import Intake
from engine.runtime import make_converter, routes_of
from engine.store import Journal
from engine.transport import open_transport
from tests.support import adt

ROOT = Path(__file__).resolve().parents[3]

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
#: Computed with the code before engine/formats (Converter.patient_key through Intake._patient_key).
ADT_KEY = ("https://fhir.wasla.ma/sid/1/mr", "10006579")


class TestDispatch:
    @pytest.mark.parametrize(("message_type", "name"), [
        ("ADT^A01^ADT_A01", "hl7v2"), ("ORU^R01", "hl7v2"), ("ACK", "hl7v2"), ("", "hl7v2"),
        ("CSV^csv_lab", "csv"), ("FHIR^Patient", "fhir"), ("FHIR^Bundle", "fhir"),
        ("FHIR", "hl7v2"), ("CSV", "hl7v2"), ("CSVX^a", "hl7v2"), ("fhir^Patient", "hl7v2"),
    ])
    def test_the_prefix_names_the_format(self, message_type: str, name: str) -> None:
        """FHIR^ and CSV^ name their formats, exactly as the prefix tests they replace; anything else is HL7 v2."""
        assert format_name(message_type) == name

    def test_formats_of_gives_one_instance_per_format(self) -> None:
        """Formats.of hands out the installation's instance of each format, HL7 v2 by default."""
        formats = Formats(None)
        assert isinstance(formats.of("ADT^A01"), Hl7v2Format) and formats.of("ORU^R01") is formats.hl7v2
        assert isinstance(formats.of("CSV^csv_lab"), CsvFormat) and formats.of("CSV^x") is formats.csv
        assert isinstance(formats.of("FHIR^Patient"), FhirFormat) and formats.of("FHIR^Bundle") is formats.fhir

    @pytest.mark.parametrize("path", ["engine/pipeline/transform.py", "engine/pipeline/intake.py",
                                      "engine/console/messages.py"])
    def test_no_prefix_test_is_left_outside_the_formats(self, path: str) -> None:
        """Transform, intake and the console ask the format: none tests a message type prefix itself."""
        text = (ROOT / path).read_text(encoding="utf-8")
        assert '"FHIR^"' not in text and '"CSV^"' not in text

    def test_intake_does_not_import_the_mapping_converter(self) -> None:
        """Intake asks the format for the patient key; the mapping layer is the format's business."""
        assert "engine.mapping" not in (ROOT / "engine/pipeline/intake.py").read_text(encoding="utf-8")


class TestIntakePatientKeys:
    @pytest.fixture
    def intake(self, config: Config, tmp_path: Path) -> Iterator[Intake]:
        broker = open_transport(config.broker, routes_of(config))
        broker.declare()
        journal = Journal(f"sqlite:///{tmp_path}/wasla.db")
        try:
            yield Intake(journal, broker, make_converter(config), clock=lambda: NOW)
        finally:
            journal.close()

    def test_an_adt_is_keyed_as_before(self, intake: Intake, config: Config) -> None:
        """An ADT's journaled patient key is the keyed hash of the same (system, value) as before."""
        receipt = intake.receive(config.channel("adt-mllp"), adt("KEY-ADT-1"))
        row = intake.journal.messages.get(receipt.message_id)
        assert row is not None and row.patient_key == intake.journal.keys.patient_key(*ADT_KEY)

    def test_csv_groups_are_journaled_without_a_key_as_before(self, intake: Intake, config: Config) -> None:
        """CSV groups carry no patient key (none was computed for them before either)."""
        (receipt,) = intake.receive_records(config.channel("lab-csv"), [(b"a\n1\n", "R1")],
                                            message_type="CSV^csv_lab", sender="LAB")
        row = intake.journal.messages.get(receipt.message_id)
        assert row is not None and row.patient_key == ""
        assert intake.formats.csv.patient_key(config.channel("lab-csv"), None) is None

    def test_fhir_is_journaled_without_a_key_as_before(self, intake: Intake, config: Config) -> None:
        """FHIR taken in carries no patient key (none was computed for it before either)."""
        receipt = asyncio.run(intake.receive_fhir_async(
            config.channel("fhir-rest"), b'{"resourceType": "Patient", "id": "p1"}', resource_type="Patient",
            control_id=""))
        row = intake.journal.messages.get(receipt.message_id)
        assert row is not None and row.patient_key == ""
        assert intake.formats.fhir.patient_key(config.channel("fhir-rest"), None) is None
