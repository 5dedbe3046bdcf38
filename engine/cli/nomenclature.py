"""`wasla nomenclature`: code sets, identifier systems and local code maps."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import orjson

from engine.cli.common import EXIT_INPUT, _friendly, config_option
from engine.cli.text import printable
from engine.config import load_config
from engine.errors import WaslaError
from engine.store import open_journal

__all__ = ["nomenclature"]


@click.group()
def nomenclature() -> None:
    """Reference code sets and identifier systems (nomenclatures/)."""


def _registry(config_dir: Path | None) -> Any:
    from engine.nomenclature import load_registry

    config = load_config(config_dir)
    return load_registry(config.nomenclatures_dir, config.fhir_base)


def _known(find: Callable[[str], Any], name: str) -> Any:
    """A registry lookup whose KeyError (which names the known ones) becomes a one-line user error."""
    try:
        return find(name)
    except KeyError as exc:
        raise WaslaError(str(exc.args[0])) from exc


@nomenclature.command("list")
@config_option
@_friendly
def nomenclature_list(config_dir: Path | None) -> None:
    """Every code set and identifier system, with its size, version and licence."""
    reg = _registry(config_dir)
    for cs in reg.codesets.values():
        click.echo(f"{cs.name:<18} {len(cs):>6} codes  {cs.version:<8} {cs.url}")
        click.echo(f"{'':<18} licence: {cs.meta['licence']}")
    for ids in reg.identifiers.values():
        click.echo(f"{'id:' + ids.key:<18} {ids.confidence:>6}        {'':<8} {ids.uri}")


@nomenclature.command("lookup")
@click.argument("codeset")
@click.argument("code")
@config_option
@_friendly
def nomenclature_lookup(codeset: str, code: str, config_dir: Path | None) -> None:
    """Look CODE up in CODESET (e.g. ma-provinces MA-NOU); exit 1 when it is not there."""
    cs = _known(_registry(config_dir).codeset, codeset)
    concept = cs.lookup(code)
    if concept is None:
        raise WaslaError(f"{code} is not a code of {cs.name} ({cs.url})")
    extra = "".join(f"  {k}={v}" for k, v in concept.properties.items() if v)
    click.echo(f"{cs.url}|{concept.code}  {concept.display}{extra}")


@nomenclature.command("validate-id")
@click.argument("system")
@click.argument("value")
@config_option
@_friendly
def nomenclature_validate_id(system: str, value: str, config_dir: Path | None) -> None:
    """Check VALUE against identifier SYSTEM (a key like cin, or its URI): ok, warning or invalid."""
    ids = _known(_registry(config_dir).identifier_system, system)
    verdict = ids.validate(value)
    click.echo(f"{verdict.level}: {ids.key} ({ids.uri})" + (f": {verdict.reason}" if verdict.reason else ""))
    if verdict.level == "invalid":
        sys.exit(EXIT_INPUT)


@nomenclature.command("unmapped")
@config_option
@_friendly
def nomenclature_unmapped(config_dir: Path | None) -> None:
    """Local codes that hold parked messages, per code map: map them and the messages go on."""

    config = load_config(config_dir)
    journal = open_journal(config.store.url)
    try:
        groups = journal.parked.codes()
    finally:
        journal.close()
    if not groups:
        click.echo("no parked messages")
        return
    click.echo(f"{'code map':<24} {'local code':<16} {'sender':<20} {'messages':>8}  first parked → last")
    for code_map, code, sender, count, first, last in groups:  # local codes and senders come from messages
        click.echo(printable(f"{code_map:<24} {code:<16} {sender:<20} {count:>8}"
                             f"  {first:%Y-%m-%d %H:%M} → {last:%Y-%m-%d %H:%M}"))


@nomenclature.command("map")
@click.argument("code_map")
@click.argument("local_code")
@click.argument("target_code")
@click.option("--display", default="", help="The target code's official display.")
@click.option("--local-display", default="", help="The sender's own label for the local code.")
@click.option("--system", default=None, help="Target system (default: the map's target, e.g. http://loinc.org).")
@click.option("--equivalence", default="equivalent", show_default=True,
              help="FHIR ConceptMap equivalence; 'unmatched' records that no target exists.")
@config_option
@_friendly
def nomenclature_map(code_map: str, local_code: str, target_code: str, display: str, local_display: str,
                     system: str | None, equivalence: str, config_dir: Path | None) -> None:
    """Add LOCAL_CODE → TARGET_CODE to CODE_MAP's map.csv; a running engine releases what it parked."""
    import csv
    import io

    from engine.nomenclature.localmaps import EQUIVALENCES

    reg = _registry(config_dir)
    lm = reg.local_maps.get(code_map)
    if lm is None:
        raise WaslaError(f"no local code map '{code_map}' (known: {', '.join(sorted(reg.local_maps)) or 'none'})")
    if equivalence not in EQUIVALENCES:
        raise WaslaError(f"--equivalence: expected one of {', '.join(EQUIVALENCES)}")
    if lm.national(local_code) is not None:
        raise WaslaError(f"{local_code} is already in {code_map}: edit {reg.folder / code_map}/map.csv to change it")
    target_system = system or str(lm.meta.get("target", ""))
    if not target_system and equivalence != "unmatched":
        raise WaslaError("--system is required: the map names no target")
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([local_code, local_display, target_system, target_code, display,
                                                  equivalence])
    path = reg.folder / code_map / "map.csv"
    text = path.read_text(encoding="utf-8")
    path.write_text(text + ("" if text.endswith("\n") else "\n") + buf.getvalue(), encoding="utf-8")
    click.echo(f"added to {path}: {local_code} → {target_system}|{target_code} ({equivalence})")


@nomenclature.command("import")
@click.argument("kind", type=click.Choice(["loinc", "icd10-claml", "gmr"]))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--version", "release", required=True, help="The release you load, e.g. 2.80 or 2019.")
@click.option("--replace", is_flag=True, help="Load over an earlier release.")
@config_option
@_friendly
def nomenclature_import(kind: str, file: Path, release: str, replace: bool, config_dir: Path | None) -> None:
    """Load a full code system from its publisher's file (LOINC's Loinc.csv, WHO ICD-10 ClaML, the GMR CSV)."""
    from engine.nomenclature import load_registry
    from engine.nomenclature.importers import import_codes

    config = load_config(config_dir)
    folder, count = import_codes(kind, file, config.nomenclatures_dir, release, replace=replace)
    reg = load_registry(config.nomenclatures_dir, config.fhir_base)  # proves the result loads
    click.echo(f"{count} codes written to {folder} ({len(reg.codeset(folder.name))} loaded)")


@nomenclature.command("import-table")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Folder and code-set name, e.g. cim10-fr.")
@click.option("--url", required=True, help="The code system's canonical URI ({base} for one of yours).")
@click.option("--code-column", required=True, help="Header of the column holding the codes.")
@click.option("--display-column", required=True, help="Header of the column holding the labels.")
@click.option("--version", "release", required=True)
@click.option("--title", default=None)
@click.option("--publisher", default="operator-supplied")
@click.option("--licence", default="loaded by the operator under the publisher's licence; never redistributed")
@click.option("--delimiter", default=None, help="Default: the most frequent of | ; , tab in the header line.")
@click.option("--replace", is_flag=True)
@config_option
@_friendly
def nomenclature_import_table(file: Path, name: str, url: str, code_column: str, display_column: str, release: str,
                              title: str | None, publisher: str, licence: str, delimiter: str | None, replace: bool,
                              config_dir: Path | None) -> None:
    """Load any tabular export of a code system (CIM-10 FR from ATIH / ANS SMT, …) by naming its columns."""
    from engine.nomenclature import load_registry
    from engine.nomenclature.importers import import_table

    config = load_config(config_dir)
    folder, count = import_table(file, config.nomenclatures_dir, name=name, url=url, title=title or name,
                                 version=release, publisher=publisher, licence=licence, code_column=code_column,
                                 display_column=display_column, delimiter=delimiter, replace=replace)
    reg = load_registry(config.nomenclatures_dir, config.fhir_base)
    click.echo(f"{count} codes written to {folder} ({len(reg.codeset(folder.name))} loaded)")


@nomenclature.command("export")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@config_option
@_friendly
def nomenclature_export(folder: Path, config_dir: Path | None) -> None:
    """Write every set as FHIR R4 JSON (CodeSystem, ValueSet, NamingSystem, ConceptMap) into FOLDER."""
    from engine.nomenclature.export import export

    config = load_config(config_dir)
    reg = _registry(config_dir)
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for resource in export(reg, config.fhir_base):
        (folder / f"{resource['resourceType']}-{resource['id']}.json").write_bytes(
            orjson.dumps(resource, option=orjson.OPT_INDENT_2) + b"\n")
        count += 1
    click.echo(f"{count} resources written to {folder}")
