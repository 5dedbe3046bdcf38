# TEMPORARY STAND-IN (not committed): replaced by the tariff-rules branch.
from __future__ import annotations
import csv
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
import re

@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    where: str
    message: str
    fix: str

@dataclass(frozen=True, slots=True)
class Priced:
    system: str
    code: str
    display: str
    key_letter: str
    coefficient: Decimal
    unit_value: Decimal
    unit_price: Decimal

class TariffBook:
    def __init__(self, values: dict[tuple[str, str], Decimal], amo: dict[str, str]) -> None:
        self.values = values
        self.amo = amo
    @classmethod
    def load(cls, folder: Path) -> "TariffBook":
        values = {}
        f = folder / "ma-tnr" / "tariffs.csv"
        if f.exists():
            for r in csv.DictReader(f.read_text().splitlines()):
                values[(r["key_letter"], r["sector"])] = Decimal(r["value_mad"])
        amo = {r["code"]: r["display"] for r in csv.DictReader((folder / "ma-amo" / "codes.csv").read_text().splitlines()) if r["kind"] == "organisme" and r["code"] != "ANAM"}
        return cls(values, amo)
    def price(self, system: str, code: str, *, sector: str, on: date) -> Priced | Reason:
        m = re.fullmatch(r"([A-Za-z]+)\s*([0-9]+(?:[.,][0-9]+)?)?", code)
        if not m:
            return Reason("ACT_UNKNOWN", "", "unknown act", "nomenclatures/ma-ngap/codes.csv")
        v = self.values.get((m.group(1), sector))
        if v is None:
            return Reason("TARIFF_MISSING", "", "no tariff", "nomenclatures/ma-tnr/tariffs.csv")
        coef = Decimal((m.group(2) or "1").replace(",", "."))
        return Priced(system, code, "", m.group(1), coef, v, (v * coef).quantize(Decimal("0.01"), ROUND_HALF_UP))
    def insurer(self, code: str) -> str | None:
        return self.amo.get(code)
