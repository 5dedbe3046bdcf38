"""A claim's resources → one FHIR R4 Claim, in a transaction Bundle with what it references.

The resources are those the billing feeds brought for one visit or account (the Bundle entries
`engine.store.claims` keeps): ChargeItems, the Patient, the Encounter, Account, Coverage, Condition,
Procedure, Practitioners. Charges of the same act on the same day are netted (a credit, FT1-6 `CD`,
or a negative quantity reverses what was charged); a credit with nothing to reverse is a reason, never
silently dropped. Each remaining act is priced by the tariff (`Pricer`: key-letter value × coefficient)
and becomes one item; what the tariff cannot price is a reason too, and the item keeps no price.

Deterministic: the same resources and options give the same bytes (items sorted, ids derived).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Protocol

from engine.claims.tariff import Priced, Reason

__all__ = ["Built", "ClaimOptions", "Pricer", "build_claim", "claim_id", "keys_of"]

CREDIT = "CD"
#: the FT1-6 transaction types that are acts to bill: charge, credit, and none said (table 0017: PY payment,
#: CO co-payment and AJ adjustment are not acts; they stay in the journal)
BILLED = ("CG", CREDIT, "")
NOT_BILLED = ("entered-in-error", "not-billable", "aborted")
_CENT = Decimal("0.01")
_NS = uuid.UUID("5b0f3e8e-8f1d-5b7c-9a57-7761a7c1a526")  # Wasla claims
_V2_0017 = "http://terminology.hl7.org/CodeSystem/v2-0017"
_V2_0912 = "http://terminology.hl7.org/CodeSystem/v2-0912"
_INPATIENT = {"IMP", "ACUTE", "NONAC", "PRENC", "SS"}


class Pricer(Protocol):
    """What the builder asks of the tariff (`engine.claims.tariff.TariffBook`): an act's price, an insurer's name."""

    def price(self, system: str, code: str, *, sector: str, on: date) -> Priced | Reason: ...

    def insurer(self, code: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ClaimOptions:
    """What a claims destination says about the claims it makes (engine.claims.assembler's options)."""

    base: str
    provider_inpe: str
    sector: str
    insurer: str = ""            # default AMO organisme when no coverage names one
    currency: str = "MAD"
    group_by: tuple[str, ...] = ("fse", "visit", "account")


@dataclass(slots=True)
class Built:
    """A built Claim Bundle, its summary, and the reasons found while building it."""

    bundle: dict[str, Any]
    reasons: list[Reason] = field(default_factory=list)
    items: int = 0
    total: Decimal = Decimal("0")
    insurer: str = ""


def claim_id(destination: str, key: str) -> str:
    """The Claim's id: a UUIDv5 of the claims destination and the claim's first key."""
    return str(uuid.uuid5(_NS, f"{destination}\x1f{key}"))


def _type_codes(identifier: dict[str, Any]) -> set[str]:
    return {str(c.get("code", "")) for c in identifier.get("type", {}).get("coding", [])}


def _key(kind: str, identifier: dict[str, Any]) -> str:
    return f"{kind}:{identifier.get('system', '')}|{identifier.get('value', '')}"


def keys_of(entries: Iterable[dict[str, Any]], group_by: Iterable[str]) -> list[str]:
    """The business keys of a message's resources in `group_by` order: `fse` (an identifier typed
    FSE or whose system ends in /fse), `visit` (Encounter identifiers, PV1-19), `account` (Account
    identifiers, PID-18). A ChargeItem-only message (FHIR over REST) leads through its account or
    context references' identifiers."""
    found: dict[str, list[str]] = {"fse": [], "visit": [], "account": []}
    for e in entries:
        r = e.get("resource") or {}
        rtype = r.get("resourceType")
        for ident in r.get("identifier", []) if rtype in ("Encounter", "Account") else []:
            if not ident.get("value"):
                continue
            if "FSE" in _type_codes(ident) or str(ident.get("system", "")).endswith("/fse"):
                found["fse"].append(_key("fse", ident))
            else:
                found["visit" if rtype == "Encounter" else "account"].append(_key(
                    "visit" if rtype == "Encounter" else "account", ident))
        if rtype == "ChargeItem":
            ctx = (r.get("context") or {}).get("identifier")
            if ctx and ctx.get("value"):
                found["visit"].append(_key("visit", ctx))
            for acc in r.get("account", []):
                ident = acc.get("identifier")
                if ident and ident.get("value"):
                    found["account"].append(_key("account", ident))
    keys: list[str] = []
    for kind in group_by:
        for k in found.get(kind, []):
            if k not in keys:
                keys.append(k)
    return keys


def _money(value: Decimal) -> float:
    return float(value.quantize(_CENT, rounding=ROUND_HALF_UP))


def _decimal(value: Any, default: Decimal) -> Decimal:
    try:
        return Decimal(str(value)) if value is not None else default
    except InvalidOperation:
        return default


@dataclass(slots=True)
class _Act:
    system: str
    code: str
    display: str
    day: str
    quantity: Decimal
    performers: list[str]
    prescribers: list[str]


def _coding(charge: dict[str, Any]) -> dict[str, Any]:
    codings = charge.get("code", {}).get("coding", [])
    return codings[0] if codings else {}


def _transaction_type(charge: dict[str, Any]) -> str:
    for ext in charge.get("extension", []):
        coding = ext.get("valueCoding") or {}
        if coding.get("system") == _V2_0017:
            return str(coding.get("code", ""))
    return ""


def _day(charge: dict[str, Any]) -> str:
    when = charge.get("occurrenceDateTime") or (charge.get("occurrencePeriod") or {}).get("start") or ""
    return str(when)[:10]


def _acts(charges: list[dict[str, Any]]) -> tuple[list[_Act], list[Reason]]:
    """Charges netted per (act, day); credits reverse the act's charge of that day, else its latest one."""
    acts: dict[tuple[str, str, str], _Act] = {}
    reasons: list[Reason] = []
    for n, c in enumerate(sorted(charges, key=lambda c: (_day(c), str(c.get("id", ""))))):
        kind = _transaction_type(c)
        if kind not in BILLED or c.get("status") in NOT_BILLED:
            continue  # a payment, co-payment or adjustment, or a charge withdrawn: kept in the journal, not an act
        coding = _coding(c)
        system, code = str(coding.get("system", "")), "".join(str(coding.get("code", "")).split())
        if not code:
            reasons.append(Reason("REQUIRED_MISSING", f"ChargeItem[{n}].code", "a charge without an act code", ""))
            continue
        if not any(i.get("value") for i in c.get("identifier", [])):
            reasons.append(Reason("TRANSACTION_ID_MISSING", f"ChargeItem[{n}].identifier",
                                  "a charge without a transaction id (FT1-2) cannot be told from the same charge "
                                  "sent again: the sender must number its charges", ""))
            continue
        qty = _decimal((c.get("quantity") or {}).get("value"), Decimal(1))
        if kind == CREDIT:
            qty = -abs(qty)
        performers: list[str] = []
        prescribers: list[str] = []
        for p in c.get("performer", []):
            ref = str((p.get("actor") or {}).get("reference", ""))
            fn = {str(x.get("code")) for x in (p.get("function") or {}).get("coding", [])
                  if x.get("system") == _V2_0912}
            (prescribers if "OP" in fn else performers).append(ref)
        key = (system, code, _day(c))
        act = acts.get(key)
        if act is None:
            acts[key] = _Act(system, code, str(coding.get("display", "")), _day(c), qty, performers, prescribers)
        else:
            act.quantity += qty
            act.performers += [p for p in performers if p not in act.performers]
            act.prescribers += [p for p in prescribers if p not in act.prescribers]
    for key, act in sorted(acts.items()):  # a credit of another day: the same act's latest charge
        if act.quantity >= 0:
            continue
        for other_key in sorted((k for k in acts if k[:2] == key[:2] and k != key), reverse=True):
            other = acts[other_key]
            taken = min(other.quantity, -act.quantity)
            if taken > 0:
                other.quantity -= taken
                act.quantity += taken
        if act.quantity < 0:
            reasons.append(Reason("CREDIT_UNMATCHED", f"act {act.system}|{act.code}",
                                  "a credit reverses more of this act than was charged", ""))
    return [a for a in acts.values() if a.quantity > 0], reasons


def _by_url(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for e in entries:
        r = e.get("resource") or {}
        if e.get("fullUrl"):
            out[str(e["fullUrl"])] = e
        if r.get("id"):
            out[f"{r.get('resourceType')}/{r['id']}"] = e
    return out


def _as_reference_target(entry: dict[str, Any]) -> dict[str, Any]:
    """A copy of a resource's entry for the Claim's Bundle: Patients, Practitioners and Organizations are
    created only if the server lacks them (the feed that sent them is their master); the others (PUT by id)
    are written as the latest message gave them."""
    out = dict(entry)
    request = dict(entry.get("request") or {})
    rtype = (entry.get("resource") or {}).get("resourceType")
    if rtype in ("Patient", "Practitioner", "Organization") and request.get("method") == "PUT" and "?" in str(
            request.get("url", "")):
        url = str(request["url"])
        out["request"] = {"method": "POST", "url": url.split("?", 1)[0], "ifNoneExist": url.split("?", 1)[1]}
    return out


def _org(base: str, system_suffix: str, value: str, name: str = "") -> dict[str, Any]:
    system = f"{base}/sid/ma/{system_suffix}"
    rid = str(uuid.uuid5(_NS, f"Organization\x1f{system}|{value}"))
    resource: dict[str, Any] = {"resourceType": "Organization", "id": rid,
                                "identifier": [{"system": system, "value": value}], "active": True}
    if name:
        resource["name"] = name
    return {"fullUrl": f"urn:uuid:{rid}", "resource": resource,
            "request": {"method": "POST", "url": "Organization", "ifNoneExist": f"identifier={system}|{value}"}}


def _amo_code(coverage: dict[str, Any], urls: dict[str, dict[str, Any]], pricer: Pricer) -> str:
    for payor in coverage.get("payor", []):
        target = urls.get(str(payor.get("reference", "")))
        idents = ((target or {}).get("resource") or {}).get("identifier", []) + (
            [payor["identifier"]] if payor.get("identifier") else [])
        for ident in idents:
            value = str(ident.get("value", ""))
            if value and pricer.insurer(value):
                return value
    return ""


def _references(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str) and ref.startswith("urn:uuid:"):
            yield ref
        for v in value.values():
            yield from _references(v)
    elif isinstance(value, list):
        for v in value:
            yield from _references(v)


def _close_over(included: dict[str, dict[str, Any]], urls: dict[str, dict[str, Any]]) -> list[Reason]:
    """Add every resource the included ones reference inside the Bundle (a transaction resolves urn:uuid
    references only within itself); a reference to a resource the feeds never sent is a reason."""
    reasons: list[Reason] = []
    todo = list(included)
    while todo:
        entry = included[todo.pop()]
        rtype = (entry.get("resource") or {}).get("resourceType")
        for ref in _references(entry.get("resource")):
            if ref in included:
                continue
            target = urls.get(ref)
            if target is None:
                reasons.append(Reason("REFERENCE_UNRESOLVED", str(rtype),
                                      f"the {rtype} the claim needs refers to a resource no message brought", ""))
                continue
            included[ref] = _as_reference_target(target)
            todo.append(ref)
    return reasons


def build_claim(entries: list[dict[str, Any]], options: ClaimOptions, pricer: Pricer, *, claim: str, version: int,
                created: str) -> Built:
    """The Claim Bundle of a claim's resources, version `version` (≥ 2: a correction of the one before)."""
    urls = _by_url(entries)
    of_type: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        of_type.setdefault(str((e.get("resource") or {}).get("resourceType")), []).append(e)
    charges = [e["resource"] for e in of_type.get("ChargeItem", [])]
    acts, reasons = _acts(charges)
    base = options.base
    included: dict[str, dict[str, Any]] = {}

    def ref(url: str) -> dict[str, str] | None:
        target = urls.get(url)
        if target is None:
            return None
        full = str(target.get("fullUrl") or url)
        included[full] = _as_reference_target(target)
        return {"reference": full}

    # the patient: the charges' subject, else the only Patient
    patient_ref = None
    for c in charges:
        patient_ref = ref(str((c.get("subject") or {}).get("reference", "")))
        if patient_ref:
            break
    if patient_ref is None and of_type.get("Patient"):
        patient_ref = ref(str(of_type["Patient"][0].get("fullUrl", "")))
    # the care team: prescribers first (primary), then performers
    team: list[str] = []
    roles: dict[str, str] = {}
    for act in acts:
        for p in act.prescribers:
            if p not in team and urls.get(p):
                team.append(p)
                roles[p] = "primary"
        for p in act.performers:
            if p not in team and urls.get(p):
                team.append(p)
                roles[p] = "other"
    care_team = [{"sequence": n, "provider": ref(p),
                  "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claimcareteamrole",
                                       "code": roles[p]}]}} for n, p in enumerate(team, 1)]
    # coverage and insurer: the AMO coverage when one names an AMO organisme
    coverages = [e for e in of_type.get("Coverage", []) if (e.get("resource") or {}).get("status") != "cancelled"]
    coverages.sort(key=lambda e: (not _amo_code(e["resource"], urls, pricer), str(e.get("fullUrl", ""))))
    insurer_code = (_amo_code(coverages[0]["resource"], urls, pricer) if coverages else "") or options.insurer
    insurance = []
    if coverages:
        cov = coverages[0]
        included[str(cov.get("fullUrl"))] = _as_reference_target(cov)
        for payor in cov["resource"].get("payor", []):  # the payor the Coverage names must be on the server too
            ref(str(payor.get("reference", "")))
        insurance.append({"sequence": 1, "focal": True, "coverage": {"reference": str(cov.get("fullUrl"))}})
    insurer_entry = _org(base, "amo", insurer_code, pricer.insurer(insurer_code) or "") if insurer_code else None
    provider_entry = _org(base, "inpe", options.provider_inpe) if options.provider_inpe else None
    # diagnoses: ICD-10 codes of the Conditions, then of the charges' reasons, each once
    diagnoses: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    sources = [(e.get("resource") or {}).get("code") or {} for e in sorted(
        of_type.get("Condition", []), key=lambda e: str(e.get("fullUrl", "")))]
    sources += [r for c in charges for r in c.get("reason", [])]
    for concept in sources:
        for dx in concept.get("coding", []):
            pair = (str(dx.get("system", "")), str(dx.get("code", "")))
            if "icd-10" in pair[0] and pair[1] and pair not in seen:
                seen.add(pair)
                diagnoses.append({"sequence": len(diagnoses) + 1, "diagnosisCodeableConcept": {"coding": [
                    {k: v for k, v in dx.items() if k in ("system", "code", "display")}]}})
    procedures: list[dict[str, Any]] = []
    for e in sorted(of_type.get("Procedure", []), key=lambda e: str(e.get("fullUrl", ""))):
        proc: dict[str, Any] = e.get("resource") or {}
        if not proc.get("code"):
            continue
        entry: dict[str, Any] = {"sequence": len(procedures) + 1, "procedureCodeableConcept": proc["code"]}
        when = proc.get("performedDateTime") or (proc.get("performedPeriod") or {}).get("start")
        if when:
            entry["date"] = when
        procedures.append(entry)
    # items
    items: list[dict[str, Any]] = []
    total = Decimal("0")
    for act in sorted(acts, key=lambda a: (a.day, a.system, a.code)):
        seq = len(items) + 1
        try:
            on = date.fromisoformat(act.day)
        except ValueError:
            reasons.append(Reason("REQUIRED_MISSING", f"item[{seq - 1}].servicedDate",
                                  "the charge has no date of service (FT1-4)", ""))
            on = date.fromisoformat(created[:10])
        priced = pricer.price(act.system, act.code, sector=options.sector, on=on)
        coding: dict[str, Any] = {"system": act.system, "code": act.code}
        item = {"sequence": seq, "productOrService": {"coding": [coding]}, "quantity": {"value": float(act.quantity)}}
        if act.day:
            item["servicedDate"] = act.day
        team_seq = [team.index(p) + 1 for p in (*act.prescribers, *act.performers) if p in team]
        if team_seq:
            item["careTeamSequence"] = sorted(set(team_seq))
        if isinstance(priced, Reason):
            reasons.append(Reason(priced.code, f"item[{seq - 1}].productOrService", priced.message, priced.fix))
            if act.display:
                coding["display"] = act.display
        else:
            coding["display"] = priced.display or act.display
            if not coding["display"]:
                del coding["display"]
            net = (priced.unit_price * act.quantity).quantize(_CENT, rounding=ROUND_HALF_UP)
            item["unitPrice"] = {"value": _money(priced.unit_price), "currency": options.currency}
            item["net"] = {"value": _money(net), "currency": options.currency}
            total += net
        items.append(item)
    # the encounter: type and period
    encounter = of_type["Encounter"][0] if of_type.get("Encounter") else None
    enc = (encounter or {}).get("resource") or {}
    inpatient = str((enc.get("class") or {}).get("code", "")) in _INPATIENT
    # the period the charges are for: their first and last day of service. Not the visit's period: a message
    # of the visit resent later (an old A01 without the discharge) would change the claim back and forth.
    days = sorted(a.day for a in acts if a.day)
    period = {"start": days[0], "end": days[-1]} if days else {}
    resource: dict[str, Any] = {
        "resourceType": "Claim", "id": claim,
        "identifier": [{"system": f"{base}/sid/ma/claim", "value": claim},
                       {"system": f"{base}/sid/ma/claim-version", "value": f"{claim}/{version}"}],
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type",
                             "code": "institutional" if inpatient else "professional"}]},
        "use": "claim",
    }
    if patient_ref:
        resource["patient"] = patient_ref
    if period:
        resource["billablePeriod"] = period
    resource["created"] = created
    if insurer_entry:
        included[insurer_entry["fullUrl"]] = insurer_entry
        resource["insurer"] = {"reference": insurer_entry["fullUrl"]}
    if provider_entry:
        included[provider_entry["fullUrl"]] = provider_entry
        resource["provider"] = {"reference": provider_entry["fullUrl"]}
    resource["priority"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority",
                                        "code": "normal"}]}
    if version > 1:  # a correction: the prior version, by the identifier each version carries
        resource["related"] = [{"claim": {"identifier": {"system": f"{base}/sid/ma/claim-version",
                                                         "value": f"{claim}/{version - 1}"}},
                                "relationship": {"coding": [{
                                    "system": "http://terminology.hl7.org/CodeSystem/ex-relatedclaimrelationship",
                                    "code": "prior"}]}}]
    if care_team:
        resource["careTeam"] = care_team
    if diagnoses:
        resource["diagnosis"] = diagnoses
    if procedures:
        resource["procedure"] = procedures
    if insurance:
        resource["insurance"] = insurance
    if items:
        resource["item"] = items
    resource["total"] = {"value": _money(total), "currency": options.currency}
    resource["meta"] = {"tag": [{"system": f"{base}/CodeSystem/claim-version", "code": str(version)}]}
    claim_entry = {"fullUrl": f"urn:uuid:{claim}", "resource": resource, "request": {"method": "PUT",
                                                                                      "url": f"Claim/{claim}"}}
    reasons += _close_over(included, urls)
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [claim_entry, *(included[k] for k in sorted(included))]}
    return Built(bundle, reasons, len(items), total, insurer_code)
