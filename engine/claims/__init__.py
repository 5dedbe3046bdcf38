"""Claims (issue 26): hospital charges gathered per visit into FHIR Claims (`assembler`, `build`), checked
before they leave against national rules kept as data (nomenclatures/ma-tnr, ma-ngap, ma-nabm): what each
act costs (`tariff`) and what the Claim must hold (`rules`); `source` is the claims channel's input."""

from engine.claims.rules import Rules, check
from engine.claims.tariff import Priced, Reason, TariffBook

__all__ = ["Priced", "Reason", "Rules", "TariffBook", "check"]
