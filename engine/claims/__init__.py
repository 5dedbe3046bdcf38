"""Claims (issue 26): hospital charges gathered per visit into FHIR Claims, priced by the national tariff,
checked by the national rules, parked with reasons or sent (`assembler`); `build` makes the Claim,
`tariff` and `rules` read nomenclatures/ma-tnr, ma-ngap and ma-nabm, `source` is the claims channel's input."""
