# TEMPORARY STAND-IN (not committed): replaced by the tariff-rules branch.
from __future__ import annotations
from pathlib import Path
from typing import Any
from engine.claims.tariff import Reason, TariffBook

class Rules:
    @classmethod
    def load(cls, path: Path) -> "Rules":
        return cls()

def check(bundle: dict[str, Any], book: TariffBook, rules: Rules, *, sector: str) -> list[Reason]:
    claim = bundle["entry"][0]["resource"]
    out = []
    for k in ("patient", "provider", "insurance", "insurer"):
        if k not in claim:
            out.append(Reason("REQUIRED_MISSING", k, f"{k} missing", ""))
    return out
