"""What an act costs: the act tables (`nomenclatures/ma-ngap`, `ma-nabm`), NGAP's written form "key letter +
coefficient", and the value of each key letter per sector and date (`nomenclatures/ma-tnr/tariffs.csv`).

Every figure is data: this module reads the files, refuses a wrong one at its file and line, and multiplies
in `Decimal`, rounding half up to the centime. An act it cannot price is a `Reason` naming the file to fill in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path

from engine.errors import ConfigError, ConfigErrors
from engine.nomenclature.codesets import CodeSet, load_codeset, read_meta
from engine.nomenclature.csvrows import rows
from engine.nomenclature.identifiers import IdentifierSystem, load_identifier_systems

__all__ = ["SECTORS", "ActTable", "Priced", "Rate", "Reason", "TariffBook", "parse_decimal"]

SECTORS = ("public", "private")
STATUSES = ("indicative", "verified")
TARIFF_COLUMNS = ["key_letter", "sector", "value_mad", "valid_from", "valid_until", "convention", "source", "status"]
ACT_COLUMNS = ["code", "display", "key_letter", "coefficient"]
CENT = Decimal("0.01")

# NGAP's written form: a key letter, then an optional coefficient (C, Cs, B120, Z 15, K50, K 1,5).
_WRITTEN = re.compile(r"([A-Za-z]+)\s*([0-9]+(?:[.,][0-9]+)?)?")


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a claim cannot leave yet: a code, the element of the Claim at fault, what was expected and the file
    that fixes it. Never holds patient data (no name, identifier value or date of birth). Immutable."""

    code: str       # ACT_UNKNOWN, TARIFF_MISSING, PRICE_MISMATCH, REQUIRED_MISSING, IDENTIFIER_INVALID …
    where: str      # a FHIR path in the Claim: "item[2].productOrService", "provider"
    message: str    # what was expected, for an operator
    fix: str        # the file that fixes it ("nomenclatures/ma-tnr/tariffs.csv"), '' if none


@dataclass(frozen=True, slots=True)
class Priced:
    """An act priced from the book: its key letter, coefficient, the letter's unit value for the sector and
    date, and the unit price (value × coefficient, rounded half up to 2 decimals). Immutable."""

    system: str
    code: str
    display: str
    key_letter: str
    coefficient: Decimal
    unit_value: Decimal
    unit_price: Decimal


@dataclass(frozen=True, slots=True)
class Rate:
    """One row of tariffs.csv: the value of a key letter in a sector from `valid_from` to `valid_until`
    (inclusive; None: still in force), with where it was read. Immutable."""

    key_letter: str
    sector: str
    value: Decimal
    valid_from: date
    valid_until: date | None
    convention: str
    source: str
    status: str
    line: int

    def covers(self, on: date) -> bool:
        return self.valid_from <= on and (self.valid_until is None or on <= self.valid_until)


@dataclass(frozen=True)
class ActTable:
    """One act nomenclature (ma-ngap, ma-nabm): its code set and the key letters its acts may use (those of
    ma-lettres-cles whose `nomenclature` is the `key_letters` of its _meta.yaml). Immutable."""

    name: str
    url: str                    # canonical URL; `{base}` kept when the book was loaded without a base
    codes: CodeSet
    letters: str                # NGAP | NABM
    file: str                   # its codes.csv, as a Reason names it (nomenclatures/ma-ngap/codes.csv)


def parse_decimal(text: str) -> Decimal | None:
    """A positive finite decimal written with a dot or a comma; None otherwise."""
    try:
        value = Decimal(text.strip().replace(",", "."))
    except InvalidOperation:
        return None
    return value if value.is_finite() and value > 0 else None


def _date(text: str, where: str, line: int, column: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"{column}: expected a date YYYY-MM-DD", file=where, line=line) from exc


class TariffBook:
    """The act tables, key letters, key-letter values and AMO organismes of one `nomenclatures/` folder,
    loaded once and never changed (a reload builds a new book). `price` answers what an act costs in a
    sector on a date, or the Reason it cannot say."""

    def __init__(self, folder: Path, base: str | None, letters: CodeSet, tables: dict[str, ActTable],
                 rates: dict[tuple[str, str], tuple[Rate, ...]], amo: CodeSet,
                 identifiers: dict[str, IdentifierSystem]) -> None:
        self.folder = folder
        self.base = base
        self.letters = letters
        self.tables = tables
        self.rates = rates
        self.amo = amo
        self.identifiers = identifiers
        self.tariffs_file = f"{folder.name}/ma-tnr/tariffs.csv"

    @classmethod
    def load(cls, nomenclatures: Path, *, base: str | None = None) -> TariffBook:
        """Read ma-lettres-cles, ma-ngap, ma-nabm, ma-amo, identifier-systems and ma-tnr/tariffs.csv.

        Args:
            nomenclatures: the installation's `nomenclatures/` folder.
            base: the FHIR base; None matches systems by their path after `{base}` (`…/CodeSystem/ma-ngap`).

        Raises ConfigError (ConfigErrors when several) naming the file and line of each problem.
        """
        b = "{base}" if base is None else base
        letters = load_codeset(nomenclatures / "ma-lettres-cles", b)
        amo = load_codeset(nomenclatures / "ma-amo", b)
        identifiers = load_identifier_systems(nomenclatures / "identifier-systems", b)
        errors: list[ConfigError] = []
        tables: dict[str, ActTable] = {}
        for name in ("ma-ngap", "ma-nabm"):
            try:
                tables[name] = _load_table(nomenclatures / name, b, letters)
            except ConfigErrors as exc:
                errors += exc.errors
            except ConfigError as exc:
                errors.append(exc)
        rates = _load_rates(nomenclatures / "ma-tnr" / "tariffs.csv", letters, errors)
        if errors:
            raise ConfigErrors(errors)
        return cls(nomenclatures, base, letters, tables, rates, amo, identifiers)

    def same_system(self, system: str, template: str) -> bool:
        """Whether `system` (as a Bundle writes it) is the URI `template` (`{base}/…`) of this installation."""
        if "{base}" not in template:
            return system == template
        if self.base is not None:
            return system == template.replace("{base}", self.base)
        suffix = template.split("{base}", 1)[1]
        return system.endswith(suffix) and system != suffix

    def table(self, system: str) -> ActTable | None:
        """The act table of a coding system: by its URL, or by its name (ma-ngap)."""
        for t in self.tables.values():
            if system == t.name or self.same_system(system, t.url):
                return t
        return None

    def act_in_table(self, system: str, code: str) -> bool:
        """Whether `code` is a row of the act table of `system` (not a written form)."""
        t = self.table(system)
        return t is not None and t.codes.lookup(code) is not None

    def price(self, system: str, code: str, *, sector: str, on: date) -> Priced | Reason:
        """What one unit of the act `code` of `system` costs in `sector` on `on`, or why it cannot be said.

        A code of the act table is priced by its key letter and coefficient; any other code is read as the
        written form "key letter + coefficient" (default 1) when the key letter is in ma-lettres-cles and
        belongs to this table's nomenclature. The `where` of a Reason is left empty for the caller to fill.
        """
        if sector not in SECTORS:
            raise ValueError(f"sector: expected one of {', '.join(SECTORS)}")
        t = self.table(system)
        if t is None:
            return Reason("ACT_UNKNOWN", "", "the coding system is not an act nomenclature (ma-ngap, ma-nabm)", "")
        row = t.codes.lookup(code)
        if row is not None:
            letter_code, coefficient = row.properties["key_letter"], parse_decimal(row.properties["coefficient"])
            display = row.display
            assert coefficient is not None  # checked at load
        else:
            m = _WRITTEN.fullmatch(code.strip())
            letter = self.letters.lookup(m.group(1)) if m else None
            coefficient = parse_decimal(m.group(2)) if m and m.group(2) else (Decimal(1) if m else None)
            if m is None or letter is None or coefficient is None:
                return Reason("ACT_UNKNOWN", "", f"'{code}' is neither an act of {t.name} nor a key letter of "
                              f"ma-lettres-cles with a coefficient (C, B120, Z 15)", t.file)
            if letter.properties.get("nomenclature") != t.letters:
                other = letter.properties.get("nomenclature")
                return Reason("ACT_UNKNOWN", "", f"key letter {letter.code} is a {other} letter, not one of {t.name} "
                              f"({t.letters})", t.file)
            letter_code, display = letter.code, letter.display
        rate = next((r for r in self.rates.get((letter_code, sector), ()) if r.covers(on)), None)
        if rate is None:
            return Reason("TARIFF_MISSING", "", f"no value of key letter {letter_code} for the {sector} sector valid "
                          "on the service date", self.tariffs_file)
        unit_price = (rate.value * coefficient).quantize(CENT, rounding=ROUND_HALF_UP)
        return Priced(system, code, display, letter_code, coefficient, rate.value, unit_price)

    def insurer(self, code: str) -> str | None:
        """The display of the AMO organisme `code` when it pays claims (ma-amo `payer: yes`); else None
        (ANAM regulates, it does not pay)."""
        c = self.amo.lookup(code)
        if c is None or c.properties.get("kind") != "organisme" or c.properties.get("payer") != "yes":
            return None
        return c.display


def _load_table(folder: Path, base: str, letters: CodeSet) -> ActTable:
    meta = read_meta(folder, base)
    nomenclature = str(meta.get("key_letters") or "")
    if nomenclature not in {c.properties.get("nomenclature") for c in letters.concepts.values()}:
        raise ConfigError(f"key_letters: expected a nomenclature of ma-lettres-cles (NGAP, NABM), got "
                          f"'{nomenclature}'", file=str(folder / "_meta.yaml"))
    path = folder / "codes.csv"
    errors = []
    for line, (_code, _display, key_letter, coefficient) in rows(path, ACT_COLUMNS):
        letter = letters.concepts.get(key_letter)
        if letter is None or letter.properties.get("nomenclature") != nomenclature:
            errors.append(ConfigError(f"key_letter: '{key_letter}' is not a {nomenclature} key letter of "
                                      "ma-lettres-cles", file=str(path), line=line))
        if parse_decimal(coefficient) is None:
            errors.append(ConfigError("coefficient: expected a positive decimal", file=str(path), line=line))
    if errors:
        raise ConfigErrors(errors)
    codes = load_codeset(folder, base)
    return ActTable(codes.name, codes.url, codes, nomenclature, f"{folder.parent.name}/{folder.name}/codes.csv")


def _load_rates(path: Path, letters: CodeSet, errors: list[ConfigError]) -> dict[tuple[str, str], tuple[Rate, ...]]:
    """tariffs.csv by (key letter, sector), each list sorted by valid_from; problems go to `errors`."""
    where = str(path)
    found: dict[tuple[str, str], list[Rate]] = {}
    try:
        for line, cells in rows(path, TARIFF_COLUMNS):
            r = dict(zip(TARIFF_COLUMNS, cells, strict=True))
            try:
                rate = _rate(r, line, where, letters)
            except ConfigError as exc:
                errors.append(exc)
                continue
            found.setdefault((rate.key_letter, rate.sector), []).append(rate)
    except ConfigError as exc:
        errors.append(exc)
    out: dict[tuple[str, str], tuple[Rate, ...]] = {}
    for key, rates in found.items():
        rates.sort(key=lambda x: (x.valid_from, x.line))
        latest: Rate | None = None   # the earlier row that runs longest
        for rate in rates:
            if latest is not None and (latest.valid_until is None or latest.valid_until >= rate.valid_from):
                first, second = sorted((latest, rate), key=lambda x: x.line)
                errors.append(ConfigError(f"the validity of {key[0]} ({key[1]}) overlaps the row at line "
                                          f"{first.line}", file=where, line=second.line))
            if latest is None or latest.valid_until is not None and (
                    rate.valid_until is None or rate.valid_until > latest.valid_until):
                latest = rate
        out[key] = tuple(rates)
    return out


def _rate(r: dict[str, str], line: int, where: str, letters: CodeSet) -> Rate:
    letter = letters.concepts.get(r["key_letter"])
    if letter is None:
        raise ConfigError(f"key_letter: '{r['key_letter']}' is not a code of ma-lettres-cles", file=where, line=line)
    if r["sector"] not in SECTORS:
        raise ConfigError(f"sector: expected {' or '.join(SECTORS)}", file=where, line=line)
    value = parse_decimal(r["value_mad"])
    if value is None:
        raise ConfigError("value_mad: expected a positive decimal (dirhams)", file=where, line=line)
    start = _date(r["valid_from"], where, line, "valid_from")
    until = _date(r["valid_until"], where, line, "valid_until") if r["valid_until"] else None
    if until is not None and until < start:
        raise ConfigError("valid_until: before valid_from", file=where, line=line)
    if r["status"] not in STATUSES:
        raise ConfigError(f"status: expected {' or '.join(STATUSES)}", file=where, line=line)
    if not r["source"]:
        raise ConfigError("source: say where the value was read", file=where, line=line)
    return Rate(letter.code, r["sector"], value, start, until, r["convention"], r["source"], r["status"], line)
