"""Claims: the checks a claim passes before it leaves, from national rules kept as data (nomenclatures/ma-tnr,
ma-ngap, ma-nabm): what each act costs, and what the Claim must hold."""

from engine.claims.rules import Rules, check
from engine.claims.tariff import Priced, Reason, TariffBook

__all__ = ["Priced", "Reason", "Rules", "TariffBook", "check"]
