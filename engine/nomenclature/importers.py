"""Loaders for the big code systems an operator brings under their own licence (never shipped).

Each reads the publisher's own file format and writes a code-set folder (`_meta.yaml` + `codes.csv`)
under the installation's `nomenclatures/`, which the registry then loads like any other.

- `loinc`: the LOINC table (`LoincTable/Loinc.csv` of the LOINC release), free with its notice;
- `icd10-claml`: WHO ICD-10 in ClaML (the XML the WHO and national centres distribute);
- `gmr`: the ANAM/CNOPS drug referential exported as CSV (`,` or `;`, UTF-8 or Windows-1252), with the
  columns third-party importers of "ref-medicaments-cnops" use (CODE, NOM, DCI1, DOSAGE1, UNITE_DOSAGE1,
  FORME, PRESENTATION, PPV, PRIX_BR, PRINCEPS_GENERIQUE, TAUX_REMBOURSEMENT): a secondary source, so
  only CODE and NOM are required and a file without them is refused with what was expected.
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from engine.errors import ConfigError

__all__ = ["IMPORTERS", "import_codes", "import_table"]

LOINC_NOTICE = (
    "This material contains content from LOINC (http://loinc.org). LOINC is copyright © Regenstrief Institute, "
    "Inc. and the Logical Observation Identifiers Names and Codes (LOINC) Committee and is available at no cost "
    "under the license at http://loinc.org/license. LOINC® is a registered United States trademark of "
    "Regenstrief Institute, Inc.")
_LOINC_COLUMNS = ("LOINC_NUM", "COMPONENT", "PROPERTY", "SYSTEM", "SCALE_TYP", "STATUS", "LONG_COMMON_NAME")


def _loinc_rows(src: Path) -> Iterator[list[str]]:
    with src.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in _LOINC_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"not a LOINC table: no column {', '.join(missing)} (expected LoincTable/Loinc.csv)",
                              file=str(src), line=1)
        for row in reader:
            yield [row["LOINC_NUM"], row["LONG_COMMON_NAME"], row["COMPONENT"], row["PROPERTY"], row["SYSTEM"],
                   row["SCALE_TYP"], row["STATUS"]]


def _claml_rows(src: Path) -> Iterator[list[str]]:
    """Categories (`<Class kind="category">`) with their preferred label; chapters and blocks are not codes."""
    try:
        for _, el in ET.iterparse(src, events=("end",)):
            if el.tag != "Class":
                continue
            if el.get("kind") == "category":
                label = next((r for r in el.findall("Rubric") if r.get("kind") == "preferred"), None)
                text = " ".join("".join(label.find("Label").itertext()).split()) if label is not None \
                    and label.find("Label") is not None else ""
                yield [el.get("code", ""), text]
            el.clear()
    except ET.ParseError as exc:
        raise ConfigError(f"not ClaML XML: {exc}", file=str(src), line=exc.position[0]) from exc


_GMR_OPTIONAL = ("DCI1", "DOSAGE1", "UNITE_DOSAGE1", "FORME", "PRESENTATION", "PPV", "PRIX_BR",
                 "PRINCEPS_GENERIQUE", "TAUX_REMBOURSEMENT")


def _gmr_rows(src: Path) -> Iterator[list[str]]:
    data = src.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252")  # spreadsheet exports on French-locale Windows
    first = text.split("\n", 1)[0]
    reader = csv.DictReader(text.splitlines(), delimiter=";" if first.count(";") > first.count(",") else ",")
    fields = [f.strip().upper() for f in (reader.fieldnames or [])]
    reader.fieldnames = fields
    missing = [c for c in ("CODE", "NOM") if c not in fields]
    if missing:
        raise ConfigError(f"not a drug referential export: no column {', '.join(missing)} (expected CODE, NOM and"
                          f" optionally {', '.join(_GMR_OPTIONAL)})", file=str(src), line=1)
    for row in reader:
        name = " ".join(p for p in (row.get("NOM", ""), row.get("DOSAGE1", ""), row.get("UNITE_DOSAGE1", ""),
                                    row.get("FORME", "")) if p and p.strip())
        yield [row["CODE"].strip(), " ".join(name.split()), *((row.get(c) or "").strip() for c in _GMR_OPTIONAL)]


IMPORTERS = {
    "loinc": {"folder": "loinc", "rows": _loinc_rows, "url": "http://loinc.org", "title": "LOINC",
              "publisher": "Regenstrief Institute", "licence": LOINC_NOTICE,
              "columns": ["code", "display", "component", "property", "system", "scale", "status"]},
    "icd10-claml": {"folder": "icd10", "rows": _claml_rows, "url": "http://hl7.org/fhir/sid/icd-10",
                    "title": "ICD-10 (WHO)", "publisher": "World Health Organization",
                    "licence": "loaded by the operator from their own licensed copy; never redistributed",
                    "columns": ["code", "display"]},
    "gmr": {"folder": "ma-gmr", "rows": _gmr_rows, "url": "{base}/CodeSystem/ma-gmr",
            "title": "Guide des médicaments remboursables (ANAM / CNOPS)", "publisher": "ANAM / CNOPS",
            "licence": "loaded by the operator from the published referential; reuse terms not known, never shipped",
            "columns": ["code", "display", *(c.lower() for c in _GMR_OPTIONAL)]},
}


def import_codes(kind: str, src: Path, nomenclatures: Path, version: str, *, replace: bool = False) -> tuple[Path, int]:
    """Write `nomenclatures/<folder>/` from the publisher's file; returns the folder and the code count."""
    spec = IMPORTERS.get(kind)
    if spec is None:
        raise ConfigError(f"unknown kind '{kind}' (known: {', '.join(sorted(IMPORTERS))})")
    return _write(spec, kind, src, nomenclatures, version, replace)


def _write(spec: dict[str, Any], kind: str, src: Path, nomenclatures: Path, version: str,
           replace: bool) -> tuple[Path, int]:
    folder = nomenclatures / str(spec["folder"])
    if folder.exists() and not replace:
        raise ConfigError(f"{folder} exists: pass --replace to load a new release over it")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "codes.csv.tmp"
    count = 0
    seen: set[str] = set()
    with tmp.open("w", encoding="utf-8", newline="") as out:
        w = csv.writer(out, lineterminator="\n")
        w.writerow(spec["columns"])
        for row in spec["rows"](src):
            if not row[0] or row[0] in seen:
                continue
            seen.add(row[0])
            w.writerow(row)
            count += 1
    if not count:
        tmp.unlink()
        raise ConfigError(f"no codes found in {src} for {kind}", file=str(src))
    tmp.replace(folder / "codes.csv")
    meta = {"kind": "CodeSystem", "name": spec["folder"], "title": spec["title"], "url": spec["url"],
            "version": version, "publisher": spec["publisher"], "licence": spec["licence"],
            "source": f"imported by wasla nomenclature import {kind} from {src.name}", "date": date.today()}
    with (folder / "_meta.yaml").open("w", encoding="utf-8") as out:
        YAML().dump(meta, out)  # ruamel quotes whatever needs quoting
    return folder, count


def import_table(src: Path, nomenclatures: Path, *, name: str, url: str, title: str, version: str, publisher: str,
                 licence: str, code_column: str, display_column: str, delimiter: str | None = None,
                 replace: bool = False) -> tuple[Path, int]:
    """Any tabular export of a code system (the CIM-10 FR from ATIH or the ANS SMT as CSV or `|`-separated
    text, a regional list …): the operator names the code and label columns, nothing is guessed."""
    data = src.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252")
    lines = text.splitlines()
    if not lines:
        raise ConfigError("empty file", file=str(src))
    sep = delimiter or max(("|", ";", ",", "\t"), key=lines[0].count)
    reader = csv.DictReader(lines, delimiter=sep)
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    missing = [c for c in (code_column, display_column) if c not in header]
    if missing:
        raise ConfigError(f"no column {', '.join(missing)} (the file has: {', '.join(header)})", file=str(src),
                          line=1)

    def rows(_: Path) -> Iterator[list[str]]:
        for row in reader:
            yield [(row.get(code_column) or "").strip(), " ".join((row.get(display_column) or "").split())]

    spec = {"folder": name, "rows": rows, "url": url, "title": title, "publisher": publisher, "licence": licence,
            "columns": ["code", "display"]}
    return _write(spec, "table", src, nomenclatures, version, replace)
