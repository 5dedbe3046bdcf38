"""HL7 v2 datatype → FHIR datatype converters (HL7 v2-to-FHIR IG datatype maps).

Each converter reads one field repetition and returns a FHIR JSON value, or None when the
field carries nothing. Every converter names the FHIR type it produces so the compiler can
check it against the target element in the FHIR R4 model. Vocabulary comes from CSV maps;
times are read by `engine.mapping.timestamps`, system URIs named by `engine.mapping.systems`.

This package holds `DatatypeConverter` and `CONVERTERS`, the registry the mapping compiler reads
(`as: CX.Identifier`); the converters live in one module per family:

- `identifiers`: CX, EI, CWE → Identifier
- `demographics`: XPN → HumanName, XAD → Address, XTN → ContactPoint
- `codes`: CWE → CodeableConcept or Coding, ST → CodeableConcept.text, the national coding of a local code
- `actors`: XCN, NDL, XON, EI, PL, DLD → a Practitioner, Organization, Device or Location, and its reference
- `quantities`: NM, SN → Quantity, Range, Ratio, integer; OBX-7 → reference range; OBX-6 units
- `times`: DTM, TM, DR → date, dateTime, instant, time
- `timing`: CQ → Quantity, RPT → Timing (the pharmacy segments' amounts and repeat patterns)
- `strings`: ST, TX → string
- `documents`: ED, TX, FT → Attachment (a document's content, base64)
- `_common`: what several families share (table 0203, the XPN/XCN name layout)

A new converter goes in its family's module (a new family, a new module) and gets one entry in CONVERTERS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.hl7v2.er7 import Field
from engine.mapping.context import Context
from engine.mapping.datatypes.actors import (
    cwe_organization,
    dld_location,
    ei_device,
    ndl_practitioner,
    pl_location,
    xcn_practitioner,
    xon_organization,
)
from engine.mapping.datatypes.codes import cwe_codeable_concept, cwe_coding, st_codeable_concept
from engine.mapping.datatypes.demographics import xad_address, xpn_human_name, xtn_contact_point
from engine.mapping.datatypes.documents import ed_attachment, ft_attachment, tx_attachment
from engine.mapping.datatypes.identifiers import cwe_identifier, cx_identifier, ei_identifier
from engine.mapping.datatypes.quantities import (
    cp_money,
    nm_integer,
    nm_positive_int,
    nm_quantity,
    nm_unsigned_int,
    sn_value,
    st_reference_range,
)
from engine.mapping.datatypes.strings import st_string, tx_string
from engine.mapping.datatypes.times import (
    dr_start,
    dtm_date,
    dtm_datetime,
    dtm_instant,
    dtm_time_part,
    nm_end_after,
    tm_time,
)
from engine.mapping.datatypes.timing import cq_duration, cq_quantity, rpt_timing
from engine.mapping.timestamps import v2_date, v2_datetime, v2_instant

__all__ = ["CONVERTERS", "DatatypeConverter", "v2_date", "v2_datetime", "v2_instant"]

Convert = Callable[[Field, Context, dict[str, Any]], Any]
ConvertAll = Callable[[list[Field], Context, dict[str, Any]], Any]


@dataclass(frozen=True)
class DatatypeConverter:
    """One HL7 v2 datatype → FHIR datatype map of the IG (`as: CX.Identifier`), named in CONVERTERS.

    It owns the function reading one field repetition (`fn`, None when the field carries nothing)
    and declares what the compiler checks at load: the FHIR type it makes, the vocabulary maps it
    reads and the options that hold v2 paths.
    """

    name: str
    fhir_type: str                      # "Identifier", or "Quantity|Range|Ratio|string" for a value[x] target
    fn: Convert
    ig: str
    vocab: tuple[str, ...] = ()
    path_options: tuple[str, ...] = ()  # options holding v2 paths, compiled at load (units: OBX-6)
    fn_all: ConvertAll | None = None    # reads every selected repetition at once into one value (TX lines)


def _all(fn: ConvertAll) -> Convert:
    return lambda f, ctx, opts: fn([f], ctx, opts)


CONVERTERS: dict[str, DatatypeConverter] = {
    c.name: c
    for c in (
        DatatypeConverter("CX.Identifier", "Identifier", cx_identifier, "CX[Identifier]"),
        DatatypeConverter("XPN.HumanName", "HumanName", xpn_human_name, "XPN[HumanName]", ("v2-0200.name-use",)),
        DatatypeConverter("XAD.Address", "Address", xad_address, "XAD[Address]", ("v2-0190.address",)),
        DatatypeConverter("XTN.ContactPoint", "ContactPoint", xtn_contact_point, "XTN[ContactPoint]",
                          ("v2-0201.contact-point-use", "v2-0202.contact-point-system")),
        DatatypeConverter("DTM.date", "date", dtm_date, "DTM[date]"),
        DatatypeConverter("DTM.dateTime", "dateTime", dtm_datetime, "DTM[dateTime]"),
        DatatypeConverter("TM.time", "time", tm_time, "TM[time]"),
        DatatypeConverter("ST.string", "string", st_string, "ST[string]"),
        DatatypeConverter("TX.string", "string", tx_string, "TX[string]"),
        DatatypeConverter("CWE.CodeableConcept", "CodeableConcept", cwe_codeable_concept, "CWE[CodeableConcept]",
                          ("v2-0396.coding-system",)),
        DatatypeConverter("ST.CodeableConcept", "CodeableConcept", st_codeable_concept, "ST[CodeableConcept.text]"),
        DatatypeConverter("CWE.Coding", "Coding", cwe_coding, "CWE[Coding]", ("v2-0396.coding-system",)),
        DatatypeConverter("EI.Identifier", "Identifier", ei_identifier, "EI[Identifier]"),
        DatatypeConverter("CWE.Identifier", "Identifier", cwe_identifier, "CWE[Identifier]",
                          ("v2-0396.coding-system",)),
        DatatypeConverter("XCN.Practitioner", "Reference", xcn_practitioner, "XCN[Practitioner]"),
        DatatypeConverter("NDL.Practitioner", "Reference", ndl_practitioner, "NDL[PractitionerRole].practitioner"),
        DatatypeConverter("XON.Organization", "Reference", xon_organization, "XON[Organization]"),
        DatatypeConverter("CWE.Organization", "Reference", cwe_organization, "CWE[Organization]",
                          ("v2-0396.coding-system",)),
        DatatypeConverter("EI.Device", "Reference", ei_device, "EI[Identifier-Extension] (Device.identifier)"),
        DatatypeConverter("PL.Location", "Reference", pl_location, "PL[Location]"),
        DatatypeConverter("NM.Quantity", "Quantity", nm_quantity, "NM[Quantity]", ("ucum-aliases",), ("units",)),
        DatatypeConverter("SN.value", "Quantity|Range|Ratio|string", sn_value, "SN[Quantity|Range|Ratio|string]",
                          ("ucum-aliases",), ("units",)),
        DatatypeConverter("ST.ReferenceRange", "ObservationReferenceRange", st_reference_range, "OBX-7",
                          ("ucum-aliases",), ("units",)),
        DatatypeConverter("DTM.instant", "instant", dtm_instant, "DTM[instant]"),
        DatatypeConverter("NM.endAfter", "dateTime", nm_end_after, "NM (duration) + start → period.end",
                          path_options=("start", "units")),
        DatatypeConverter("DR.start", "dateTime", dr_start, "DR[dateTime]"),
        DatatypeConverter("DLD.Location", "Reference", dld_location, "DLD[Location-Discharge]",
                          ("v2-0396.coding-system",)),
        DatatypeConverter("DTM.timePart", "dateTime", dtm_time_part,
                          "DTM[dateTime] when it has a time (PID-7 birthTime)"),
        DatatypeConverter("NM.integer", "integer", nm_integer, "NM[integer]"),
        DatatypeConverter("CP.Money", "Money", cp_money, "CP (MO quantity, denomination) → Money (no IG map)"),
        DatatypeConverter("NM.positiveInt", "positiveInt", nm_positive_int, "NM[positiveInt]"),
        DatatypeConverter("CQ.Quantity", "Quantity", cq_quantity, "CQ[Quantity]", ("ucum-aliases",)),
        DatatypeConverter("CQ.Duration", "Duration", cq_duration, "CQ[Quantity] (a Duration: a unit of time)"),
        DatatypeConverter("RPT.Timing", "Timing", rpt_timing, "RPT[Timing]", ("v2-0396.coding-system",)),
        DatatypeConverter("NM.unsignedInt", "unsignedInt", nm_unsigned_int, "NM[unsignedInt]"),
        DatatypeConverter("ED.Attachment", "Attachment", ed_attachment, "ED[Attachment]"),
        DatatypeConverter("TX.Attachment", "Attachment", _all(tx_attachment),
                          "OBX[DocumentReference] OBX-5 IF OBX-2=TX (content.attachment.data, base64)",
                          fn_all=tx_attachment),
        DatatypeConverter("FT.Attachment", "Attachment", _all(ft_attachment),
                          "OBX[DocumentReference] OBX-5 IF OBX-2=FT (content.attachment.data, base64)",
                          fn_all=ft_attachment),
    )
}
