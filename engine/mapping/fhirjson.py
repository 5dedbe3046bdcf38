"""FHIR JSON from outside, read strictly: concrete R4 resource types only, no duplicate keys, a bounded depth,
and every number kept exactly as it was written.

`read` is for the door (a REST channel's application/fhir+json): it refuses what the journal and the
destination would read differently (a duplicate key: the journal keeps both, a parser keeps one) or
could not read at all (a depth Python's recursion would not survive). `loads_exact` is for re-writing
a body that went through the door: numbers become `orjson.Fragment`s holding their text, so 2^70 and
1.10 are written back as 1180591620717411303424 and 1.10, never through a float.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson

__all__ = ["MAX_DEPTH", "R4_RESOURCE_TYPES", "FHIRJSONError", "loads_exact", "read"]

MAX_DEPTH = 100  # nested objects and arrays; a Bundle of Questionnaires with nested items stays far below

# FHIR R4 (4.0.1) resource types (https://hl7.org/fhir/R4/resourcelist.html): the concrete ones only;
# Resource and DomainResource are abstract, HumanName, Element, Extension … are data types.
_R4_NAMES = """
Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment AppointmentResponse AuditEvent Basic Binary
BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement CarePlan CareTeam CatalogEntry ChargeItem
ChargeItemDefinition Claim ClaimResponse ClinicalImpression CodeSystem Communication CommunicationRequest
CompartmentDefinition Composition ConceptMap Condition Consent Contract Coverage CoverageEligibilityRequest
CoverageEligibilityResponse DetectedIssue Device DeviceDefinition DeviceMetric DeviceRequest DeviceUseStatement
DiagnosticReport DocumentManifest DocumentReference EffectEvidenceSynthesis Encounter Endpoint EnrollmentRequest
EnrollmentResponse EpisodeOfCare EventDefinition Evidence EvidenceVariable ExampleScenario ExplanationOfBenefit
FamilyMemberHistory Flag Goal GraphDefinition Group GuidanceResponse HealthcareService ImagingStudy Immunization
ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide InsurancePlan Invoice Library Linkage List
Location Measure MeasureReport Media Medication MedicationAdministration MedicationDispense MedicationKnowledge
MedicationRequest MedicationStatement MedicinalProduct MedicinalProductAuthorization MedicinalProductContraindication
MedicinalProductIndication MedicinalProductIngredient MedicinalProductInteraction MedicinalProductManufactured
MedicinalProductPackaged MedicinalProductPharmaceutical MedicinalProductUndesirableEffect MessageDefinition
MessageHeader MolecularSequence NamingSystem NutritionOrder Observation ObservationDefinition OperationDefinition
OperationOutcome Organization OrganizationAffiliation Parameters Patient PaymentNotice PaymentReconciliation Person
PlanDefinition Practitioner PractitionerRole Procedure Provenance Questionnaire QuestionnaireResponse RelatedPerson
RequestGroup ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject RiskAssessment
RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen SpecimenDefinition StructureDefinition
StructureMap Subscription Substance SubstanceNucleicAcid SubstancePolymer SubstanceProtein
SubstanceReferenceInformation SubstanceSourceMaterial SubstanceSpecification SupplyDelivery SupplyRequest Task
TerminologyCapabilities TestReport TestScript ValueSet VerificationResult VisionPrescription
"""
R4_RESOURCE_TYPES = frozenset(_R4_NAMES.split())


class FHIRJSONError(ValueError):
    """A body the door refuses: `title` says what kind of problem, `detail` what, `field` where (a path)."""

    def __init__(self, title: str, detail: str, field: str = "") -> None:
        super().__init__(detail)
        self.title, self.detail, self.field = title, detail, field


def _refuse_constant(name: str) -> Any:
    raise FHIRJSONError("Not JSON", f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise FHIRJSONError("Duplicate JSON key", f"the key '{_shown(key)}' appears twice in one object",
                                    _shown(key))
            seen.add(key)
    return obj


def _shown(text: str, limit: int = 64) -> str:
    """A name from the body, fit to be said back: printable, short."""
    clean = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return clean + ("…" if len(text) > limit else "")


def _path(link: tuple[Any, ...] | None) -> str:
    parts: list[str] = []
    while link is not None:
        key, link = link
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return "".join(reversed(parts)).lstrip(".")


def _walk(data: Any) -> None:
    """Depth and resource types, with a stack of our own (no recursion, whatever the nesting)."""
    stack: list[tuple[Any, int, tuple[Any, ...] | None]] = [(data, 1, None)]
    while stack:
        value, depth, link = stack.pop()
        if depth > MAX_DEPTH:
            raise FHIRJSONError("Too deeply nested", f"objects and arrays nest more than {MAX_DEPTH} deep",
                                _path(link))
        if isinstance(value, dict):
            rtype = value.get("resourceType")
            if rtype is not None and not (isinstance(rtype, str) and rtype in R4_RESOURCE_TYPES):
                where = _path(("resourceType", link))
                shown = _shown(rtype) if isinstance(rtype, str) else type(rtype).__name__
                raise FHIRJSONError("Not a FHIR R4 resource type",
                                    f"unknown resourceType '{shown}': not a concrete FHIR R4 resource type", where)
            stack.extend((v, depth + 1, (k, link)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, depth + 1, (i, link)) for i, v in enumerate(value))


def read(raw: bytes) -> Any:
    """The body as Python values for validation (integers as int, decimals as Decimal: exact), or
    FHIRJSONError. Strict JSON first (orjson: UTF-8, no NaN, no lone surrogate; its own depth limit),
    then depth and resource types checked without recursion, then duplicate keys."""
    try:
        shallow = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FHIRJSONError("Not JSON", str(exc)) from exc
    _walk(shallow)
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_float=Decimal,
                          parse_constant=_refuse_constant)
    except FHIRJSONError:
        raise
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits (sys.set_int_max_str_digits)
        raise FHIRJSONError("Not JSON", f"unreadable number or value ({exc.__class__.__name__})") from exc


def loads_exact(raw: bytes) -> Any:
    """A body that went through the door, for re-writing with orjson: numbers as Fragments of their text.
    Deeper than MAX_DEPTH (journaled before the limit) is a ValueError, not a RecursionError."""
    shallow = orjson.loads(raw)
    stack: list[tuple[Any, int]] = [(shallow, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"nested more than {MAX_DEPTH} deep")
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((v, depth + 1) for v in children)
    fragment = _fragment
    return json.loads(raw.decode("utf-8"), parse_float=fragment, parse_int=fragment,
                      parse_constant=_refuse_constant)


def _fragment(text: str) -> orjson.Fragment:
    return orjson.Fragment(text.encode())
