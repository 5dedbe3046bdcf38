"""The `wasla` command: run, check, convert.

Errors reach the user as one line each (`file:line:col: field: message`), never as a traceback;
set WASLA_DEBUG=1 to see the traceback of an internal error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any

import click
import orjson

from engine.cli_text import printable
from engine.config import Config, load_config
from engine.errors import ConfigError, ConfigErrors, MappingError, ParseError, WaslaError
from engine.secret import secret

__all__ = ["main"]

EXIT_CONFIG = 2
EXIT_INPUT = 1
EXIT_INTERNAL = 70


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigErrors as exc:
            for e in exc.errors:
                click.echo(printable(ConfigError.__str__(e), lines=True), err=True)
            sys.exit(EXIT_CONFIG)
        except ConfigError as exc:
            click.echo(printable(str(exc), lines=True), err=True)
            sys.exit(EXIT_CONFIG)
        except WaslaError as exc:  # may quote a message's field: escaped like every CLI output (engine.cli_text)
            click.echo(printable(f"error: {exc}", lines=True), err=True)
            sys.exit(EXIT_INPUT)
        except KeyboardInterrupt:
            sys.exit(130)
        except BrokenPipeError:  # `wasla nomenclature list | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except Exception as exc:
            if os.environ.get("WASLA_DEBUG"):
                raise
            click.echo(f"internal error: {exc.__class__.__name__} (set WASLA_DEBUG=1 for details)", err=True)
            sys.exit(EXIT_INTERNAL)

    return wrapper


config_option = click.option("--config", "config_dir", type=click.Path(file_okay=False, path_type=Path),
                             default=None, help="Configuration folder (default: $WASLA_CONFIG or ./config).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wasla")
def main() -> None:
    """Wasla: HL7 v2 / CSV / REST in, FHIR R4 out, every message journaled."""


def _check_all(config: Config) -> list[ConfigError]:
    from engine.runtime import make_converter

    errors: list[ConfigError] = []
    converter = make_converter(config)
    names = sorted({ch.mapping for ch in config.channels} |
                   {p.parent.name for p in config.mappings_dir.glob("*/mapping.yaml")})
    for name in names:
        try:
            converter.spec(name)
        except ConfigErrors as exc:
            errors.extend(exc.errors)
        except ConfigError as exc:
            errors.append(exc)
    from engine.mapping.csvmap import find_csvmap

    for path in sorted(config.mappings_dir.glob("*/csvmap.yaml")):
        try:
            find_csvmap(config.mappings_dir, path.parent.name, config.config_dir / "schema")
        except ConfigErrors as exc:
            errors.extend(exc.errors)
        except ConfigError as exc:
            errors.append(exc)
    errors += _check_destinations(config)
    return errors


def _check_destinations(config: Config) -> list[ConfigError]:
    """What a destination needs from its machine: the environment variables holding its secrets (named,
    never printed) and its certificate files."""
    errors = []
    for dest in config.destinations.values():
        auth = dict(dest.options.get("auth") or {})
        for key in ("token_env", "password_env", "client_secret_env"):
            name = auth.get(key)
            if name and not secret(str(name)):
                errors.append(ConfigError(f"environment variable {name} is not set (auth.{key})", file=dest.file,
                                          field=dest.kind))
        for key, path in dict(dest.options.get("tls") or {}).items():
            if key in ("ca", "cert", "key") and not Path(str(path)).exists():
                errors.append(ConfigError(f"tls.{key}: no file {path}", file=dest.file, field=dest.kind))
    return errors


@main.command()
@config_option
@_friendly
def check(config_dir: Path | None) -> None:
    """Validate configuration and mappings; print every problem as file:line: message."""
    config = load_config(config_dir)
    errors = _check_all(config)
    if errors:
        raise ConfigErrors(errors)
    mappings = len(list(config.mappings_dir.glob("*/mapping.yaml")))
    csvmaps = len(list(config.mappings_dir.glob("*/csvmap.yaml")))
    click.echo(f"ok: {len(config.channels)} channel(s), {len(config.destinations)} destination(s), "
               f"{mappings} mapping(s)" + (f", {csvmaps} CSV map(s)" if csvmaps else ""))


@main.command()
@config_option
@click.option("--role", "roles", multiple=True, type=click.Choice(["intake", "transform", "deliver"]),
              help="Run only these roles (repeatable). Default: all of them.")
@_friendly
def run(config_dir: Path | None, roles: tuple[str, ...]) -> None:
    """Run the engine: intake (channels), transform and deliver."""
    from engine import logs
    from engine.runtime import ROLES, Engine

    config = load_config(config_dir)
    errors = _check_all(config)
    if errors:
        raise ConfigErrors(errors)
    logs.configure(config.log_level)
    chosen = tuple(r for r in ROLES if r in roles) if roles else ROLES
    if config.broker.url.startswith("memory://") and chosen != ROLES:
        click.echo("warning: memory:// is in-process; roles not run here will not see these messages", err=True)
    Engine(config, chosen).run()


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mapping", default=None, help="Mapping name (default: the one that accepts the message type).")
@click.option("--now", default=None, help="Transformation time, ISO 8601 (default: MSH-7, else the current time).")
@click.option("--compact", is_flag=True, help="One line of JSON instead of indented.")
@click.option("--explain", is_flag=True,
              help="Print the lineage instead: for each FHIR element, the HL7 v2 fields it came from, "
                   "then the valued fields no rule read.")
@click.option("--json", "as_json", is_flag=True, help="With --explain: bundle, lineage and fields not read as JSON.")
@config_option
@_friendly
def convert(file: Path, mapping: str | None, now: str | None, compact: bool, explain: bool, as_json: bool,
            config_dir: Path | None) -> None:
    """Convert one HL7 v2 file to a FHIR Bundle on stdout (offline: no broker, no journal)."""
    from engine.hl7v2.er7 import decode, parse
    from engine.mapping.datatypes import v2_instant
    from engine.runtime import make_converter

    config = load_config(config_dir)
    converter = make_converter(config)
    raw = file.read_bytes()
    try:
        msg = parse(decode(raw))
    except ParseError as exc:
        raise WaslaError(f"{file}: not an HL7 v2 message: {exc.message}") from exc
    name = mapping or _mapping_for(config, converter, msg.message_type, file)
    if now:
        try:
            clock = datetime.fromisoformat(now)
        except ValueError as exc:
            raise WaslaError(f"--now: expected an ISO 8601 date-time, got '{now}'") from exc
        clock = clock if clock.tzinfo else clock.replace(tzinfo=UTC)
    else:
        stamp = v2_instant(msg.msh.field(7).text, converter.tz) if msg.msh.field(7).text else None
        clock = datetime.fromisoformat(stamp) if stamp else datetime.now(UTC)
    try:
        if explain:
            _print_explanation(converter, name, msg, clock, as_json)
            return
        result = converter.convert(name, msg, clock)
    except MappingError as exc:
        raise WaslaError(f"{file}: cannot convert with mapping {name}: {exc}") from exc
    if compact:
        sys.stdout.buffer.write(result.bundle + b"\n")
    else:
        from engine.mapping import pretty

        sys.stdout.buffer.write(pretty(result.bundle))
    for w in result.warnings:
        click.echo(printable(f"warning: {w['code']} {w['field']} ({w['rule']}) {w.get('detail', '')}".rstrip()),
                   err=True)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--channel", "channel_id", required=True, help="A csv_drop channel of this installation.")
@click.option("--timeout", default=3600.0, show_default=True, help="Seconds to follow the file before giving up.")
@config_option
@_friendly
def ingest(file: Path, channel_id: str, timeout: float, config_dir: Path | None) -> None:
    """Hand FILE to a running engine's CSV channel and follow it to the end with a progress bar."""
    import hashlib
    import shutil
    import time

    from engine.store import open_journal

    config = load_config(config_dir)
    try:
        channel = config.channel(channel_id)
    except KeyError as exc:
        raise WaslaError(f"no channel '{channel_id}'") from exc
    if channel.input_kind != "csv_drop":
        raise WaslaError(f"channel '{channel_id}' is not a csv_drop channel")
    folder = Path(str(channel.input["folder"]))
    digest, total = hashlib.sha256(), -1  # the header line is not a row
    with file.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            total += chunk.count(b"\n")
    sha = digest.hexdigest()
    part = folder / f".{file.name}.part"
    shutil.copyfile(file, part)
    part.rename(folder / file.name)
    (folder / f"{file.name}.ready").touch()
    journal = open_journal(config.store.url)
    deadline = time.monotonic() + timeout
    try:
        with click.progressbar(length=max(total, 1), label=file.name, show_pos=True) as bar:
            done = 0
            while time.monotonic() < deadline:
                state = journal.files.status(channel.id, sha)
                if state is not None:
                    status, rows, messages, rejected = state
                    bar.update(rows - done)
                    done = rows
                    if status != "processing":
                        break
                time.sleep(0.2)
            else:
                raise WaslaError(f"{file.name}: not finished after {timeout:g} s (is the engine running?)")
    finally:
        journal.close()
    click.echo(f"{file.name}: {status}, {rows} rows, {messages} messages, {rejected} rejected"
               + (f" (see {folder / 'failed' / (file.name + '.rejects.csv')})" if rejected else ""))
    if status != "done":
        sys.exit(EXIT_INPUT)


@main.group()
def token() -> None:
    """API tokens for REST channels."""


@token.command("new")
@click.argument("name")
def token_new(name: str) -> None:
    """Make a token for sender NAME: give the token to the sender, put the sha256 line in the channel YAML."""
    import hashlib
    import secrets

    value = secrets.token_urlsafe(32)
    click.echo(f"token (give it to {name}, it is not stored anywhere): {value}")
    click.echo("for the channel's input.rest.tokens:")
    click.echo(f"  - {{name: {name}, sha256: {hashlib.sha256(value.encode()).hexdigest()}}}")


@main.group()
def user() -> None:
    """Console users (config/users.yaml): roles viewer, operator, admin."""


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "operator", "admin"]), required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (scripts, tests).")
@config_option
@_friendly
def user_add(name: str, role: str, password_stdin: bool, config_dir: Path | None) -> None:
    """Add NAME (or change their role and password); the password is stored as a scrypt hash only."""
    from engine.console.users import Users

    password = sys.stdin.readline().rstrip("\n") if password_stdin else click.prompt(
        "password", hide_input=True, confirmation_prompt=True)
    if len(password) < 12:
        raise WaslaError("a console password has at least 12 characters")
    folder = Path(config_dir or os.environ.get("WASLA_CONFIG") or "config")
    Users(folder / "users.yaml").add(name, role, password)
    click.echo(f"{name}: {role} (config/users.yaml)")


@main.group()
def mapping() -> None:
    """Work on mappings: run their fixtures."""


@mapping.command("test")
@click.argument("names", nargs=-1)
@click.option("--update", is_flag=True,
              help="Write the current output as the expected one where it differs (review it against the IG!).")
@config_option
@_friendly
def mapping_test(names: tuple[str, ...], update: bool, config_dir: Path | None) -> None:
    """Convert each mapping's fixtures/*.hl7 and compare with fixtures/*.json (all mappings by default)."""
    from engine.mapping.fixtures import fixture_converter, run_fixtures

    config = load_config(config_dir)
    known = sorted(p.parent.name for p in config.mappings_dir.glob("*/mapping.yaml"))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise WaslaError(f"no mapping {', '.join(unknown)} (known: {', '.join(known)})")
    converter = fixture_converter(config.mappings_dir, config.config_dir / "schema",
                                  config.nomenclatures_dir / "hl7v2-fhir")
    results = run_fixtures(converter, list(names or known), update=update)
    for r in results:
        status = "ok" if r.ok else ("updated" if r.updated else "FAIL")
        click.echo(f"{status:<7} {r.mapping}/{r.name}")
        if r.error:
            click.echo(f"        {r.error}")
        for line in r.differences:
            click.echo(f"        {line}")
    failed = [r for r in results if not r.ok and not r.updated]
    empty = [n for n in (names or known) if not any(r.mapping == n for r in results)]
    for n in empty:
        click.echo(f"FAIL    {n}: no fixtures (mappings/{n}/fixtures/*.hl7)")
    click.echo(f"{len(results) - len(failed)} passed, {len(failed) + len(empty)} failed"
               + (f", {sum(r.updated for r in results)} updated" if update else ""))
    if failed or empty:
        sys.exit(EXIT_INPUT)


@main.group()
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
    from engine.store import open_journal

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


def _print_explanation(converter: Any, name: str, msg: Any, clock: datetime, as_json: bool) -> None:
    from engine.mapping.explain import describe

    ex = converter.explain(name, msg, clock)
    if as_json:
        out = {"bundle": ex.bundle, **ex.as_json()}
        sys.stdout.buffer.write(orjson.dumps(out, option=orjson.OPT_INDENT_2) + b"\n")
        return
    spec = converter.spec(name)
    click.echo(printable(f"# {msg.message_type} {msg.control_id} → mapping {spec.name} {spec.version}: "
                         "element ← HL7 v2 fields [rule]"))
    order = {k: i for i, k in enumerate(dict.fromkeys((r.resource, r.full_url) for r in ex.lineage))}
    last = None
    for row in sorted(ex.lineage, key=lambda r: order[(r.resource, r.full_url)]):  # stable: rule order kept
        if (row.resource, row.full_url) != last:
            last = (row.resource, row.full_url)
            click.echo(f"{row.resource} {row.full_url}")
        sources = ", ".join(describe(s, msg.version) for s in row.sources) or "fixed value or reference"
        click.echo(f"  {row.element:<34} ← {sources}  [{row.rule}]")
    click.echo("# valued fields no rule read" + (":" if ex.not_read else ": none"))
    for path in ex.not_read:
        click.echo(f"  {describe(path, msg.version)}" + ("  (whole segment)" if "-" not in path else ""))
    for w in ex.warnings:
        click.echo(printable(f"warning: {w['code']} {w['field']} ({w['rule']}) {w.get('detail', '')}".rstrip()),
                   err=True)


def _mapping_for(config: Config, converter: Any, message_type: str, file: Path) -> str:
    for path in sorted(config.mappings_dir.glob("*/mapping.yaml")):
        spec = converter.spec(path.parent.name)
        if message_type in spec.accepts:
            return spec.name
    raise WaslaError(f"{file}: unsupported message type {message_type or '(none)'}: no mapping accepts it")


from engine.cli_messages import main_audit, messages  # noqa: E402  (they use this module's helpers)

main.add_command(messages)
main.add_command(main_audit)
