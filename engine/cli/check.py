"""`wasla check`: every problem of the configuration and mappings, one line each."""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli.common import _friendly, config_option
from engine.config import Config, load_config
from engine.errors import ConfigError, ConfigErrors
from engine.secret import secret

__all__ = ["check"]


def _check_all(config: Config) -> list[ConfigError]:
    from engine.runtime import make_converter

    errors: list[ConfigError] = []
    converter = make_converter(config)
    names = sorted({name for ch in config.channels for name in ch.mapping_names()} |
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
    from engine.pipeline.route import check_conditions

    errors += _check_destinations(config) + check_conditions(config) + _check_claims(config)
    return errors


def _check_claims(config: Config) -> list[ConfigError]:
    """The key-letter tariffs, act tables and claim rules (nomenclatures/ma-tnr), when the installation has them."""
    folder = config.nomenclatures_dir
    if not (folder / "ma-tnr").is_dir():
        return []
    from engine.claims import Rules, TariffBook

    schema = config.config_dir / "schema" / "claim-rules.schema.json"
    errors: list[ConfigError] = []
    book = rules = None
    try:
        book = TariffBook.load(folder, base=config.fhir_base)
    except ConfigErrors as exc:
        errors.extend(exc.errors)
    except ConfigError as exc:
        errors.append(exc)
    try:
        rules = Rules.load(folder / "ma-tnr" / "rules.yaml", schema=schema if schema.is_file() else None)
    except ConfigErrors as exc:
        errors.extend(exc.errors)
    except ConfigError as exc:
        errors.append(exc)
    if book is not None and rules is not None:
        errors += rules.against(book)
    return errors


def _check_destinations(config: Config) -> list[ConfigError]:
    """What a destination needs from its machine: the environment variables holding its secrets (named,
    never printed) and its certificate files; and what its connector checks itself (`check_config`)."""
    from engine.connectors.registry import connector

    errors = []
    for dest in config.destinations.values():
        own_check = getattr(connector("outputs", dest.kind), "check_config", None)  # a stage's own wiring (claims)
        if own_check is not None:
            errors += own_check(dest, config)
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


@click.command()
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
