"""The checks a Claim passes before it leaves, as national rules in `nomenclatures/ma-tnr/rules.yaml`: required
elements, the identifier each party must carry, the insurer, accepted claim types and act nomenclatures, the
currency and the price tolerance. This module only interprets that file.

`check` reads the whole Claim transaction Bundle (references are resolved by `fullUrl`), prices every item
again from the `TariffBook` and returns the Reasons the claim must be parked for; none holds patient data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from engine.claims.tariff import CENT, SECTORS, Priced, Reason, TariffBook
from engine.config.validate import load_schema, validate
from engine.config.yamlfile import YamlDoc, load_yaml
from engine.errors import ConfigError, ConfigErrors

__all__ = ["IdentifierRule", "Rules", "check"]

CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
VERDICTS = ("invalid", "warning")
_PATH = re.compile(r"[A-Za-z][A-Za-z0-9]*(\[\])?(\.[A-Za-z][A-Za-z0-9]*(\[\])?)*")

Step = tuple[str, bool]            # (element name, every element of a list)
Resolve = Callable[[str], dict[str, Any] | None]


def _steps(path: str) -> tuple[Step, ...]:
    return tuple((s.removesuffix("[]"), s.endswith("[]")) for s in path.split("."))


@dataclass(frozen=True)
class IdentifierRule:
    """The identifier the resource at `path` must carry: a system of nomenclatures/identifier-systems, shown to
    operators as `label` with its `expected` format, and the validator verdicts that park the claim. Immutable."""

    path: str
    system: str                 # key in identifier-systems (inpe, cnss)
    label: str
    expected: str
    also: str                   # an element holding the value when no identifier does (Coverage.subscriberId)
    reject: frozenset[str]
    line: int | None


@dataclass(frozen=True)
class Rules:
    """The claim rules of one rules.yaml, loaded once into a frozen object; `check` interprets them."""

    file: str
    version: str
    currency: str
    tolerance: Decimal
    claim_types: tuple[str, ...]
    required: tuple[str, ...]
    identifiers: tuple[IdentifierRule, ...]
    insurer_path: str
    insurer_system: str
    acts: dict[str, bool]       # act code set name → written form accepted
    act_lines: dict[str, int | None] = field(default_factory=dict, repr=False)   # where each is in the file

    @classmethod
    def load(cls, path: Path, *, schema: Path | None = None) -> Rules:
        """Read `nomenclatures/ma-tnr/rules.yaml`; every problem is a ConfigError at its file:line.

        Args:
            path: the rules file.
            schema: config/schema/claim-rules.schema.json, to validate against first when given.
        """
        doc = load_yaml(path)
        if schema is not None:
            found = validate(doc, load_schema(schema))
            if found:
                raise ConfigErrors(found)
        data = doc.data
        if not isinstance(data, dict):
            raise ConfigError("expected a mapping (kind: ClaimRules …)", file=doc.file, line=1)
        errors: list[ConfigError] = []
        out = _read(doc, data, errors)
        if errors or out is None:
            raise ConfigErrors(errors or [ConfigError("unreadable", file=doc.file)])
        return out

    def against(self, book: TariffBook) -> list[ConfigError]:
        """What these rules name that the book's nomenclatures lack (an identifier system, an act code set),
        each at its line of the rules file; [] when they fit."""
        out = [ConfigError(f"no identifier system '{r.system}' in identifier-systems (known: "
                           f"{', '.join(sorted(book.identifiers))})", file=self.file, line=r.line,
                           field="identifiers.system") for r in self.identifiers if r.system not in book.identifiers]
        out += [ConfigError(f"no act code set '{name}' (known: {', '.join(sorted(book.tables))})", file=self.file,
                            line=self.act_lines.get(name), field="acts")
                for name in self.acts if name not in book.tables]
        return out


def _read(doc: YamlDoc, data: dict[str, Any], errors: list[ConfigError]) -> Rules | None:
    def err(message: str, where: list[str | int]) -> None:
        errors.append(doc.error(message, where))

    if data.get("kind") != "ClaimRules":
        err("expected ClaimRules", ["kind"])
    currency = data.get("currency")
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
        err("expected an ISO 4217 code such as MAD", ["currency"])
    try:
        tolerance = Decimal(str(data.get("price_tolerance", "0")).replace(",", "."))
        if not tolerance.is_finite() or tolerance < 0:
            raise InvalidOperation
    except InvalidOperation:
        err("expected an amount ≥ 0 (MAD)", ["price_tolerance"])
        tolerance = Decimal(0)
    claim_types = data.get("claim_types")
    if not isinstance(claim_types, list) or not claim_types or not all(isinstance(t, str) for t in claim_types):
        err("expected a list of claim-type codes (institutional, professional …)", ["claim_types"])
        claim_types = []
    required = data.get("required") or []
    if not isinstance(required, list):
        err("expected a list of paths", ["required"])
        required = []
    for i, p in enumerate(required):
        if not isinstance(p, str) or not _PATH.fullmatch(p):
            err("expected a path such as billablePeriod.start or item[].net", ["required", i])
    idents: list[IdentifierRule] = []
    raw_ids = data.get("identifiers") or []
    for i, r in enumerate(raw_ids if isinstance(raw_ids, list) else []):
        if not isinstance(r, dict):
            err("expected a mapping with path, system, label", ["identifiers", i])
            continue
        for key in ("path", "system", "label"):
            if not isinstance(r.get(key), str) or not r.get(key):
                err(f"missing {key}", ["identifiers", i])
        if isinstance(r.get("path"), str) and not _PATH.fullmatch(r["path"]):
            err("expected a path such as careTeam[].provider", ["identifiers", i, "path"])
        reject = r.get("reject", ["invalid"])
        if not isinstance(reject, list) or not set(reject) <= set(VERDICTS):
            err("expected a list of invalid, warning", ["identifiers", i, "reject"])
            reject = ["invalid"]
        line, _ = doc.position(["identifiers", i])
        idents.append(IdentifierRule(str(r.get("path", "")), str(r.get("system", "")), str(r.get("label", "")),
                                     str(r.get("expected", "format")), str(r.get("also", "")), frozenset(reject),
                                     line))
    insurer = data.get("insurer") or {}
    if not isinstance(insurer, dict) or not isinstance(insurer.get("path"), str) or not isinstance(
            insurer.get("system"), str) or not _PATH.fullmatch(insurer["path"]):
        err("expected path and system (the identifier system of ma-amo codes)", ["insurer"])
        insurer = {"path": "insurer", "system": ""}
    acts: dict[str, bool] = {}
    raw_acts = data.get("acts")
    if not isinstance(raw_acts, dict) or not raw_acts:
        err("expected the act code sets accepted, e.g. ma-ngap: {written_form: true}", ["acts"])
    else:
        for name, opts in raw_acts.items():
            written = (opts or {}).get("written_form", False) if isinstance(opts, dict) else None
            if not isinstance(written, bool):
                err("expected {written_form: true|false}", ["acts", name])
            acts[str(name)] = bool(written)
    if errors:
        return None
    act_lines = {name: doc.position(["acts", name], key=True)[0] for name in acts}
    return Rules(doc.file, str(data.get("version", "")), str(currency), tolerance, tuple(claim_types),
                 tuple(required), tuple(idents), insurer["path"], insurer["system"], acts, act_lines)


# --- check ---------------------------------------------------------------------------------------------

_MISSING = object()


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _walk(node: Any, steps: tuple[Step, ...], where: str, resolve: Resolve) -> Iterator[tuple[str, Any]]:
    """(path with indexes, value) of each value at `steps`; the value is _MISSING where the path stops. A list
    step over an empty or absent list yields nothing: the list's own requirement says it is missing."""
    if not steps:
        yield where, node
        return
    if isinstance(node, dict) and isinstance(node.get("reference"), str):
        target = resolve(node["reference"])
        if target is None:
            yield where, _MISSING
            return
        node = target
    (name, each), rest = steps[0], steps[1:]
    here = f"{where}.{name}" if where else name
    value = node.get(name) if isinstance(node, dict) else None
    if each:
        for i, v in enumerate(value if isinstance(value, list) else []):
            yield from _walk(v, rest, f"{here}[{i}]", resolve)
    elif _empty(value):
        yield ".".join([here, *(n + ("[]" if e else "") for n, e in rest)]), _MISSING
    else:
        yield from _walk(value, rest, here, resolve)


def _resolver(bundle: dict[str, Any]) -> Resolve:
    index: dict[str, dict[str, Any]] = {}
    for e in bundle.get("entry") or []:
        res = e.get("resource") if isinstance(e, dict) else None
        if not isinstance(res, dict):
            continue
        if isinstance(e.get("fullUrl"), str):
            index[e["fullUrl"]] = res
        if res.get("resourceType") and res.get("id"):
            index.setdefault(f"{res['resourceType']}/{res['id']}", res)
    return index.get


def _money(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def _day(*texts: Any) -> date | None:
    for t in texts:
        if isinstance(t, str) and len(t) >= 10:
            try:
                return date.fromisoformat(t[:10])
            except ValueError:
                continue
    return None


def check(bundle: dict[str, Any], book: TariffBook, rules: Rules, *, sector: str) -> list[Reason]:
    """Every reason the Claim of this transaction Bundle cannot leave; [] when it can.

    Args:
        bundle: the Claim transaction Bundle; references resolve by entry fullUrl (or ResourceType/id).
        book: the tariff book of the installation's nomenclatures.
        rules: the claim rules (nomenclatures/ma-tnr/rules.yaml).
        sector: public or private, the claims destination's option; tariffs are per sector.

    Raises ConfigError (at the rules file's line) when a rule names an identifier system or an act code set
    the nomenclatures do not have.
    """
    if sector not in SECTORS:
        raise ValueError(f"sector: expected one of {', '.join(SECTORS)}")
    misfits = rules.against(book)
    if misfits:
        raise ConfigErrors(misfits)
    resolve = _resolver(bundle)
    claim = next((e["resource"] for e in bundle.get("entry") or [] if isinstance(e, dict)
                  and isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") == "Claim"), None)
    if claim is None:
        return [Reason("REQUIRED_MISSING", "Claim", "the Bundle holds no Claim", "")]
    out: list[Reason] = []
    for path in rules.required:
        for where, value in _walk(claim, _steps(path), "", resolve):
            if value is _MISSING:
                out.append(Reason("REQUIRED_MISSING", where, f"{where} is required (rules.yaml)", ""))
    out += _claim_type(claim, rules)
    for rule in rules.identifiers:
        out += _identifiers(claim, rule, book, rules, resolve)
    out += _insurer(claim, book, rules, resolve)
    out += _items(claim, book, rules, sector)
    return list(dict.fromkeys(out))     # once each, in the order found


def _claim_type(claim: dict[str, Any], rules: Rules) -> list[Reason]:
    codings = (claim.get("type") or {}).get("coding") or []
    codes = [c.get("code") for c in codings if isinstance(c, dict) and c.get("system") == CLAIM_TYPE]
    if not codings or any(c in rules.claim_types for c in codes):
        return []
    return [Reason("CLAIM_TYPE_INVALID", "type", f"expected a {CLAIM_TYPE} code among "
                   f"{', '.join(rules.claim_types)}", "")]


def _identifiers(claim: dict[str, Any], rule: IdentifierRule, book: TariffBook, rules: Rules,
                 resolve: Resolve) -> list[Reason]:
    system = book.identifiers[rule.system]      # check() verified the rules against the book
    out = []
    for where, ref in _targets(claim, rule.path, resolve):
        if isinstance(ref, Reason):
            out.append(ref)
            continue
        values = [i.get("value") for i in ref.get("identifier") or []
                  if isinstance(i, dict) and isinstance(i.get("system"), str) and book.same_system(i["system"],
                                                                                                  system.uri)]
        if not values and rule.also and not _empty(ref.get(rule.also)):
            values = [ref.get(rule.also)]
        if not values:
            out.append(Reason("REQUIRED_MISSING", f"{where}.identifier", f"the {rule.label} is missing (an "
                              f"identifier of the {system.key} system)", ""))
        for value in values:
            verdict = system.validate(value if isinstance(value, str) else "")
            if verdict.level not in rule.reject:
                continue
            if verdict.reason == "empty":
                what = f"the {rule.label} is empty"
            elif "check digits" in verdict.reason:
                what = f"the check digits of the {rule.label} do not verify"
            else:
                what = f"the {rule.label} does not match the expected {rule.expected}"
            out.append(Reason("IDENTIFIER_INVALID", f"{where}.identifier", what, ""))
    return out


def _targets(claim: dict[str, Any], path: str, resolve: Resolve) -> Iterator[tuple[str, dict[str, Any] | Reason]]:
    """The resources the references at `path` point at; a Reason for a reference that names no entry. Absent
    references yield nothing (the required rules report them)."""
    for where, ref in _walk(claim, _steps(path), "", resolve):
        if not isinstance(ref, dict):
            continue
        target = resolve(ref["reference"]) if isinstance(ref.get("reference"), str) else None
        if target is None:
            yield where, Reason("REQUIRED_MISSING", where, "the reference names no entry of the Bundle", "")
        else:
            yield where, target


def _insurer(claim: dict[str, Any], book: TariffBook, rules: Rules, resolve: Resolve) -> list[Reason]:
    fix = f"{book.folder.name}/ma-amo/codes.csv"
    out = []
    for where, ref in _targets(claim, rules.insurer_path, resolve):
        if isinstance(ref, Reason):
            out.append(ref)
            continue
        codes = [i.get("value") for i in ref.get("identifier") or [] if isinstance(i, dict)
                 and isinstance(i.get("system"), str) and book.same_system(i["system"], rules.insurer_system)]
        if not codes:
            out.append(Reason("REQUIRED_MISSING", f"{where}.identifier", "the insurer has no identifier of the AMO "
                              "organisme system", ""))
        elif not any(isinstance(c, str) and book.insurer(c) for c in codes):
            payers = sorted(c.code for c in book.amo.concepts.values() if book.insurer(c.code))
            out.append(Reason("INSURER_UNKNOWN", where, "the insurer is not a paying AMO organisme of ma-amo "
                              f"({', '.join(payers)})", fix))
    return out


def _items(claim: dict[str, Any], book: TariffBook, rules: Rules, sector: str) -> list[Reason]:
    out: list[Reason] = []
    tables = [book.tables[n] for n in rules.acts]
    period = claim.get("billablePeriod") or {}
    total = Decimal(0)
    for i, item in enumerate(claim.get("item") or []):
        w = f"item[{i}]"
        if not isinstance(item, dict):
            continue
        unit, unit_reasons = _amount(item, "unitPrice", w, rules)
        net, net_reasons = _amount(item, "net", w, rules)
        out += unit_reasons + net_reasons
        quantity = _money((item.get("quantity") or {}).get("value", 1))
        if quantity is None:
            out.append(Reason("MONEY_INVALID", f"{w}.quantity", "expected a number", ""))
            quantity = Decimal(1)
        if net is not None:
            total += net
        if unit is not None and net is not None:
            expected = (quantity * unit).quantize(CENT, rounding=ROUND_HALF_UP)
            if abs(net - expected) > rules.tolerance:
                out.append(Reason("PRICE_MISMATCH", f"{w}.net", f"net {net} should be quantity × unitPrice = "
                                  f"{expected} {rules.currency}", ""))
        out += _price_item(item, w, unit, tables, book, rules, sector, _day(item.get("servicedDate"),
                           period.get("start"), claim.get("created")))
    if claim.get("item"):
        value, reasons = _amount(claim, "total", "", rules)
        out += reasons
        if value is not None and abs(value - total) > rules.tolerance:
            out.append(Reason("TOTAL_MISMATCH", "total", f"total {value} should be the sum of item[].net = {total} "
                              f"{rules.currency}", ""))
    return out


def _amount(node: dict[str, Any], name: str, w: str, rules: Rules) -> tuple[Decimal | None, list[Reason]]:
    money = node.get(name)
    where = f"{w}.{name}" if w else name
    if not isinstance(money, dict) or "value" not in money:
        return None, []          # a required element: the required rules say so
    value = _money(money.get("value"))
    if value is None:
        return None, [Reason("MONEY_INVALID", where, "expected a number", "")]
    if money.get("currency") != rules.currency:
        return value, [Reason("CURRENCY_INVALID", where, f"expected currency {rules.currency}", "")]
    return value, []


def _price_item(item: dict[str, Any], w: str, unit: Decimal | None, tables: list[Any], book: TariffBook,
                rules: Rules, sector: str, on: date | None) -> list[Reason]:
    codings = (item.get("productOrService") or {}).get("coding") or []
    if not codings and not (item.get("productOrService") or {}).get("text"):
        return []                # required rules report an absent productOrService
    where = f"{w}.productOrService"
    found = next(((c, t) for c in codings if isinstance(c, dict) for t in tables
                  if isinstance(c.get("system"), str) and book.same_system(c["system"], t.url)), None)
    if found is None:
        return [Reason("ACT_UNKNOWN", where, "no coding of an accepted act nomenclature "
                       f"({', '.join(t.name for t in tables)})", "")]
    coding, table = found
    code: str = coding["code"] if isinstance(coding.get("code"), str) else ""
    if not rules.acts[table.name] and not book.act_in_table(coding["system"], code):
        return [Reason("ACT_UNKNOWN", where, f"'{code}' is not an act of {table.name} (written forms are not "
                       "accepted for it by rules.yaml)", table.file)]
    if on is None:
        return [Reason("REQUIRED_MISSING", f"{w}.servicedDate", "a service date (or billablePeriod.start) is needed "
                       "to choose the tariff", "")]
    priced = book.price(coding["system"], code, sector=sector, on=on)
    if isinstance(priced, Reason):
        return [Reason(priced.code, where, priced.message, priced.fix)]
    return _compare(priced, unit, w, rules, sector)


def _compare(priced: Priced, unit: Decimal | None, w: str, rules: Rules, sector: str) -> list[Reason]:
    # A credit line may carry a negative unit price: the tariff prices the act, the sign is the line's.
    if unit is None or abs(abs(unit) - priced.unit_price) <= rules.tolerance:
        return []
    return [Reason("PRICE_MISMATCH", f"{w}.unitPrice", f"billed {abs(unit)} {rules.currency}, the tariff gives "
                   f"{priced.unit_price} ({priced.key_letter} × {priced.coefficient} at {priced.unit_value}, "
                   f"{sector} sector)", "")]
