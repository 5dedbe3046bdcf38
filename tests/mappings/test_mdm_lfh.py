"""The `mdm` mapping against LinuxForHealth hl7v2-fhir-converter's DocumentReference tests (issue 25).

Each test replays one message of
src/test/java/io/github/linuxforhealth/hl7/segments/Hl7DocumentReferenceFHIRConversionTest.java
(LinuxForHealth/hl7v2-fhir-converter, Apache-2.0) and names the Java method it comes from. The oracle is
the HL7 v2-to-FHIR IG (TXA[DocumentReference], OBX[DocumentReference]): where LinuxForHealth and the IG
disagree, the test asserts the IG and says what LinuxForHealth does instead.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from engine.hl7v2 import decode, parse
from engine.mapping import Converter
from tests.mappings.conftest import NOW

EVENTS = ["MDM^T02", "MDM^T06"]   # LinuxForHealth runs each test for both (@ValueSource)


def _head(event: str) -> str:
    return (f"MSH|^~\\&|HL7Soup|Instance1|MCM|Instance2|200911021022|Security|{event}^MDM_T02|64322|P|2.6|123|456|ER|"
            "AL|USA|ASCII|en|2.6|56789^NID^UID|MCM||||\n"
            "PID|1||000054321^^^MRN|||||||||||||M|CAT|||||N\n"
            "PV1|1|I||||||||||||||||||||||||||||||||||||||||||\n"
            "ORC|NW|||PGN001|SC|D|1|||MS|MS|||||\n"
            "OBR|1||||||20170825010500|||||||||||||002|||||F||||||||\n")


def _bundle(converter: Converter, event: str, tail: str) -> list[dict[str, Any]]:
    msg = parse(decode((_head(event) + tail).encode()))
    return [e["resource"] for e in orjson.loads(converter.convert("mdm", msg, NOW).bundle)["entry"]]


def _doc(converter: Converter, event: str, tail: str) -> dict[str, Any]:
    return next(r for r in _bundle(converter, event, tail) if r["resourceType"] == "DocumentReference")


@pytest.mark.parametrize("event", EVENTS)
def test_type(converter: Converter, event: str) -> None:
    """doc_ref_type_test: TXA-2 OP → type code OP. IG TXA-2 is CWE[CodeableConcept] with no vocabulary: no
    CWE-3, no system. LinuxForHealth adds system v2-0270 and the display "Operative report"; the IG does not."""
    doc = _doc(converter, event, "TXA|1|OP|TEXT||||201801180346||<PHYSID1>||||||||PA||AV|||<PHYSID2>||\n"
                                 "OBX|1|SN|||||||||X")
    assert doc["type"] == {"coding": [{"code": "OP"}]}


@pytest.mark.parametrize("event", EVENTS)
def test_date(converter: Converter, event: str) -> None:
    """doc_ref_date_test: TXA-6 → date (IG TXA-6 → date, instant, when a time is included)."""
    doc = _doc(converter, event, "TXA|1||TEXT|||20180117144200|201801180346||<PHYSID1>||||||||||AV|||<PHYSID2>||\n"
                                 "OBX|1|ST|100||This is content|||||||X\n")
    assert doc["date"].startswith("2018-01-17T14:42")


@pytest.mark.parametrize("event", EVENTS)
def test_txa16_is_an_identifier_not_the_description(converter: Converter, event: str) -> None:
    """doc_ref_description_test: LinuxForHealth writes TXA-16 as description. The IG maps TXA-16 (unique
    document file name) → identifier[1] and TXA-25 (document title) → description: the IG is followed."""
    doc = _doc(converter, event, "TXA|1||TEXT||||201801180346||<PHYSID1>|||||||This segment is for description|||AV"
                                 "|||<PHYSID2>||\nOBX|1|ST|100||This is content|||||||X\n")
    assert {"value": "This segment is for description"} in doc["identifier"]
    assert "description" not in doc


@pytest.mark.parametrize("event", EVENTS)
def test_doc_status(converter: Converter, event: str) -> None:
    """doc_ref_doc_status_test: TXA-17 PA → docStatus preliminary (as LinuxForHealth). Its OBX-11 fallback
    (F → final) is not followed: the IG's OBX[DocumentReference] leaves OBX-11 unmapped."""
    doc = _doc(converter, event, "TXA|1||TEXT|||20180117144200|201801180346||<PHYSID1>||||||||PA||AV|||<PHYSID2>||\n"
                                 "OBX|1|ST|100||This is content|||||||X\n")
    assert doc["docStatus"] == "preliminary"
    doc = _doc(converter, event, "TXA|1||TEXT|||20180117144200|201801180346||<PHYSID1>||||||||||AV|||<PHYSID2>||\n"
                                 "OBX|1|SN|||||||||F")
    assert "docStatus" not in doc


@pytest.mark.parametrize("event", EVENTS)
def test_security_label(converter: Converter, event: str) -> None:
    """doc_ref_security_label_test: TXA-18 R → securityLabel v2-0272 R Restricted (IG DocumentConfidentialityStatus)."""
    doc = _doc(converter, event, "TXA|1||TEXT||||201801180346||<PHYSID1>||||||||PA|R|AV|||<PHYSID2>||\n"
                                 "OBX|1|SN|||||||||X")
    assert doc["securityLabel"] == [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0272",
                                                 "code": "R", "display": "Restricted"}]}]


@pytest.mark.parametrize("event", EVENTS)
def test_status(converter: Converter, event: str) -> None:
    """doc_ref_status_test: TXA-19 OB → superseded (as LinuxForHealth; the IG adds the v2 code as an
    alternate-codes extension, written too); nothing → current (IG row 0). LinuxForHealth's OBR-25 fallback
    (X → entered-in-error) has no IG row: with TXA-19 empty the status is current."""
    doc = _doc(converter, event, "TXA|1||TEXT||||201801180346||<PHYSID1>||||||||PA||OB|||<PHYSID2>||\n"
                                 "OBX|1|SN|||||||||X")
    assert doc["status"] == "superseded"
    assert doc["_status"]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "OB"
    tail = "TXA|1||TEXT||||201801180346||<PHYSID1>||||||||PA|||||<PHYSID2>\nOBX|1|SN|||||||||X"
    head_x = _head(event).replace("002|||||F||||||||", "002|||||X")
    msg = parse(decode((head_x + tail).encode()))
    doc = next(e["resource"] for e in orjson.loads(converter.convert("mdm", msg, NOW).bundle)["entry"]
               if e["resource"]["resourceType"] == "DocumentReference")
    assert doc["status"] == "current"


@pytest.mark.parametrize("event", EVENTS)
def test_subject(converter: Converter, event: str) -> None:
    """doc_ref_subject_test: subject → the Patient of PID."""
    resources = _bundle(converter, event, "TXA|1||TEXT||||201801180346||<PHYSID1>||||||||||AV|||<PHYSID2>||\n"
                                          "OBX|1|SN|||||||||X")
    doc = next(r for r in resources if r["resourceType"] == "DocumentReference")
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    assert patient["identifier"][0]["value"] == "000054321"
    assert doc["subject"]["reference"].startswith("urn:uuid:")


@pytest.mark.parametrize("event", EVENTS)
def test_master_identifier(converter: Converter, event: str) -> None:
    """doc_ref_master_identifier_test: TXA-12.1 → masterIdentifier.value. LinuxForHealth leaves the system out
    (or urn:id:<EI.2>) and falls back to EI.3 as the value; the IG's EI[Identifier-Organization] takes EI.1 as
    value, and Wasla scopes an EI by its authority, else the sender (README, Resource ids), so the system is
    always written; with EI.1 empty there is no masterIdentifier."""
    doc = _doc(converter, event, "TXA|1||TEXT||||201801180346|||||<MESSAGEID>|||||PA|R|AV|||||\nOBX|1|SN|||||||||X")
    assert doc["masterIdentifier"]["value"] == "<MESSAGEID>" and doc["masterIdentifier"]["system"]
    doc = _doc(converter, event, "TXA|1||TEXT||||201801180346|||||^SYSTEM^<BACKUPID>|||||PA|R|AV|||||\n"
                                 "OBX|1|SN|||||||||X")
    assert "masterIdentifier" not in doc


@pytest.mark.parametrize("event", EVENTS)
def test_author_and_authenticator(converter: Converter, event: str) -> None:
    """doc_ref_authenticator_and_author_test: TXA-9 → author, a Practitioner with XCN-1 as identifier (as
    LinuxForHealth). LinuxForHealth's authenticator comes from TXA-22 (authentication person); the IG maps
    TXA-10 (assigned document authenticator) → authenticator and leaves TXA-22 unmapped: no authenticator."""
    resources = _bundle(converter, event, "TXA|1||TEXT||||201801180346||<PHYSID1>^DOE^JANE^J^^MD||||||||||AV|||"
                                          "<PHYSID2>^DOE^JOHN^K^^MD||\nOBX|1|ST|100||This is content|||||||X\n")
    doc = next(r for r in resources if r["resourceType"] == "DocumentReference")
    practitioners = [r for r in resources if r["resourceType"] == "Practitioner"]
    assert len(doc["author"]) == 1 and "authenticator" not in doc
    assert [p["identifier"][0]["value"] for p in practitioners] == ["<PHYSID1>"]
    assert practitioners[0]["name"][0]["family"] == "DOE" and practitioners[0]["name"][0]["given"] == ["JANE", "J"]


@pytest.mark.parametrize("event", EVENTS)
def test_tx_content(converter: Converter, event: str) -> None:
    """doc_ref_content_test: three TX OBX → text/plain, base64 of the lines. LinuxForHealth joins them into one
    attachment; the IG's OBX[DocumentReference] makes one content per OBX (repetitions of one OBX-5 are lines
    of one attachment): three contents whose texts, joined, are LinuxForHealth's."""
    doc = _doc(converter, event, "TXA|1||TEXT||||201801180346||<PHYSID1>||||||||||AV|||<PHYSID2>||\n"
                                 "OBX|1|TX|||ECHOCARDIOGRAPHIC REPORT||||||F|||202101010000|||\n"
                                 "OBX|2|TX|||NORMAL LV CHAMBER SIZE WITH MILD CONCENTRIC LVH||||||F|||202101010000|||\n"
                                 "OBX|3|TX|||HYPERDYNAMIC LV SYSTOLIC FUNCTION, VISUAL EF 80%||||||F|||"
                                 "202101010000|||\n")
    assert [c["attachment"]["contentType"] for c in doc["content"]] == ["text/plain"] * 3
    text = "\n".join(base64.b64decode(c["attachment"]["data"]).decode() for c in doc["content"])
    assert text == ("ECHOCARDIOGRAPHIC REPORT\nNORMAL LV CHAMBER SIZE WITH MILD CONCENTRIC LVH\n"
                    "HYPERDYNAMIC LV SYSTOLIC FUNCTION, VISUAL EF 80%")
