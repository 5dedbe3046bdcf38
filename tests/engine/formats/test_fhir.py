"""FHIR input: passed through as a transaction Bundle, no mapping, no patient key, shown as text (issue 24)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from engine.config import Config
from engine.formats import Formats, NotConverted
from engine.mapping.passthrough import as_transaction
from tests.engine.formats.conftest import Remembers

HEADERS = {"received_at": "2026-12-01T12:00:00+00:00", "message_id": "m-fhir", "message_type": "FHIR^Patient"}
PATIENT = '{"resourceType": "Patient", "id": "p1", "name": [{"family": "CŒUR"}]}'.encode()


class TestRead:
    def test_fhir_has_no_v2_form_and_no_patient_key(self, formats: Formats, config: Config) -> None:
        """Nothing to parse as HL7 v2, and no patient key, as before the formats existed."""
        ch = config.channel("fhir-rest")
        assert formats.fhir.read(PATIENT, ch, HEADERS) is None
        assert formats.fhir.patient_key(ch, None) is None


class TestConvert:
    def test_a_resource_is_wrapped_in_a_transaction(self, formats: Formats, config: Config) -> None:
        """The passthrough Bundle, routed on the journaled type alone, its receipt time passed on as it came."""
        memory = Remembers()
        converted = formats.fhir.convert(PATIENT, HEADERS, config.channel("fhir-rest"), memory)
        assert converted.bundle == as_transaction(PATIENT)
        assert orjson.loads(converted.bundle)["entry"][0]["request"] == {"method": "PUT", "url": "Patient/p1"}
        assert (converted.mapping, converted.version, converted.warnings) == ("fhir-passthrough", "1", [])
        assert (converted.message_type, converted.sending_facility, converted.control_id) == ("FHIR^Patient", "", "")
        assert converted.received_at == HEADERS["received_at"] and converted.message is None
        assert memory.written == []  # nothing of it is remembered for a mapping's keep_earlier

    @pytest.mark.parametrize(("body", "headers", "kind"), [
        (b"[1, 2]", HEADERS, "TypeError"),
        (b'{"id": "x"}', HEADERS, "KeyError"),
        (PATIENT, {"message_type": "FHIR^Patient"}, "KeyError"),
    ])
    def test_what_is_not_a_resource_fails_with_its_reason(self, formats: Formats, config: Config, body: bytes,
                                                          headers: dict[str, str], kind: str) -> None:
        """Not a resource, or no receipt time: failed as 'not a FHIR resource', as before."""
        with pytest.raises(NotConverted) as failed:
            formats.fhir.convert(body, headers, config.channel("fhir-rest"), Remembers())
        assert failed.value.reason == f"not a FHIR resource ({kind})"

    def test_bytes_that_are_not_json_fail_too(self, formats: Formats, config: Config) -> None:
        """Not JSON at all: the same reason, naming the decoder's error."""
        with pytest.raises(NotConverted) as failed:
            formats.fhir.convert(b"not json", HEADERS, config.channel("fhir-rest"), Remembers())
        assert failed.value.reason.startswith("not a FHIR resource (")


class TestLayout:
    def test_the_json_is_shown_as_text_without_lineage(self, formats: Formats, config: Config) -> None:
        """The console shows the body as UTF-8 text; there is no mapping to explain."""
        ch = config.channel("fhir-rest")
        assert formats.fhir.layout(PATIENT, ch).text == PATIENT.decode("utf-8")
        assert formats.fhir.layout(PATIENT, ch).segments == []
        assert formats.fhir.lineage(PATIENT, ch, "fhir-passthrough", datetime.now(UTC)) is None
