"""Engine configuration: `config/wasla.yaml`, `config/channels/*.yaml`, `config/destinations/*.yaml`.

Loaded once, validated against `config/schema/*.schema.json`, then frozen. Every problem
is collected (schema first, then wiring) and reported as `file:line:col: field: message`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.config.dispatch import accepted_types, dispatch_table
from engine.config.validate import composed_schema, validate
from engine.config.yamlfile import YamlDoc, load_yaml
from engine.connectors.fields import Options, build_options, claims_of
from engine.connectors.inputs import pipeline_options
from engine.connectors.registry import connectors
from engine.errors import ConfigError, ConfigErrors

__all__ = ["BreakerConfig", "BrokerSettings", "ChannelConfig", "Config", "DestinationConfig", "OpsSettings",
           "Retention", "RetryConfig", "RouteConfig", "StoreSettings", "load_config"]


@dataclass(frozen=True)
class BrokerSettings:
    """The `broker:` section of `config/wasla.yaml`: the transport's URL (scheme picks the transport),
    prefetch, shards, batching and publish-confirm timeout. Frozen once loaded.
    """

    url: str = "memory://"
    prefetch: int = 100
    shards: int = 1
    batch_max: int = 100
    batch_linger_ms: float | None = None  # None: the transport's own, 5 ms on memory://, 20 ms on RabbitMQ
    confirm_timeout: float = 10.0
    queue_type: str = "classic"  # quorum: replicated on a RabbitMQ cluster


@dataclass(frozen=True)
class Retention:
    """How long the journal keeps message bodies and metadata, in days, and how often pruning runs;
    the engine-wide default, or a channel's own. Frozen once loaded.
    """

    bodies_days: float = 30.0
    metadata_days: float = 365.0
    every_s: float = 3600.0


@dataclass(frozen=True)
class OpsSettings:
    """Where the operations endpoint (metrics, health, console) listens, and whether its session cookie
    is Secure. Frozen once loaded.
    """

    host: str = "127.0.0.1"
    port: int = 9464   # 0: no ops endpoint
    secure_cookies: bool = False  # the console behind HTTPS: the session cookie is Secure


@dataclass(frozen=True)
class StoreSettings:
    """The journal's database URL and its group-commit wait. Frozen once loaded."""

    url: str = "sqlite:///var/wasla.db"
    group_commit_ms: float = 0.0


@dataclass(frozen=True)
class ChannelConfig:
    """One channel (`config/channels/<id>.yaml`): its input, mapping, destinations and data-quality policy.

    Owns the input's options twice over: `input`, the connector's own (what its `options_spec` declares),
    and `options`, the pipeline options the engine reads from every input (`engine.connectors.inputs`),
    built once here with their declared defaults, so no engine module repeats a default. Frozen.
    """

    id: str
    file: str
    input_kind: str
    input: Mapping[str, Any]           # the input's Options (engine.connectors.fields) once loaded
    mapping: str                       # `pipeline.mapping`: the one mapping of every message ('' when dispatched)
    outputs: tuple[str, ...]
    description: str = ""
    enabled: bool = True
    retention: Retention | None = None   # None: the engine's default
    # MSH-9 pattern (ADT^A01, ADT^*) → mapping: `pipeline.mappings`, else each mapping's `accepts:`
    mappings: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    unmapped_types: str = "reject"       # reject | pass: a type no mapping of the channel takes
    unmapped_codes: str = "pass"     # pass | park | reject
    invalid_identifiers: str = "flag"   # flag | tag | reject
    sender: str = ""                    # authority of identifiers without CX-4 (else MSH-4, MSH-3)
    default_identifier_type: str = ""   # CX-5 when absent
    input_sender: str = ""              # the input's `sender` when its connector says it names the sender
    options: Options = field(init=False, repr=False, compare=False)   # the pipeline options, defaults applied

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", pipeline_options(self.input))

    def mapping_for(self, message_type: str) -> str | None:
        """The mapping that converts a message of `message_type` (MSH-9, `TYPE^TRIGGER`); None: none does.

        An exact pattern wins over `TYPE^*`. A channel with one `mapping` gives it every type when
        `unmapped_types` is reject (a type it does not accept then fails in it, as it always has).
        """
        found = self.mappings.get(message_type) or self.mappings.get(message_type.partition("^")[0] + "^*")
        if found:
            return found
        return self.mapping if self.mapping and self.unmapped_types == "reject" else None

    def mapping_names(self) -> tuple[str, ...]:
        """Every mapping this channel may convert with, sorted."""
        return tuple(sorted({*self.mappings.values(), *((self.mapping,) if self.mapping else ())}))

    def policy(self) -> dict[str, str]:
        """The channel's data-quality choices, as the converter reads them."""
        out = {"invalid_identifiers": self.invalid_identifiers, "unmapped_codes": self.unmapped_codes}
        sender = self.sender or self.input_sender
        if sender:
            out["sender"] = sender
        if self.default_identifier_type:
            out["default_identifier_type"] = self.default_identifier_type
        return out


@dataclass(frozen=True)
class RouteConfig:
    """Which messages a destination takes, beyond the channels that list it in `output:`."""

    channels: tuple[str, ...] = ()          # more channels whose messages it takes
    types: tuple[str, ...] = ()             # ADT^A08, ADT^*, ORU^R01 …; empty: every type
    facilities: tuple[str, ...] = ()        # MSH-4 sending facilities; empty: all
    when: MappingProxyType[str, Any] | None = None   # a condition in the mapping language's syntax


@dataclass(frozen=True)
class RetryConfig:
    """Retries of transient failures: a few fast ones in process, then delayed retry queues."""

    attempts: int = 3                        # in-process tries per round (jittered exponential backoff)
    backoff_max_s: float = 2.0
    delays_s: tuple[float, ...] = (5, 30, 120, 600, 1800)   # delayed rounds; the last repeats
    max_age_h: float = 72.0                  # after this long since receipt: dead letter


@dataclass(frozen=True)
class BreakerConfig:
    """A destination's circuit breaker: how many consecutive transient failures open it, and the longest
    pause between probes while it is open. Frozen once loaded.
    """

    failures: int = 5                        # consecutive transient failures that open the circuit
    probe_max_s: float = 15.0                # longest pause between probes while open


@dataclass(frozen=True)
class DestinationConfig:
    """One destination, from `config/destinations/<id>.yaml`: its output connector and options, route,
    retries, circuit breaker and `on_failure` policy, plus the parsed YAML for locating errors. Frozen
    once loaded.
    """

    id: str
    file: str
    kind: str
    options: Mapping[str, Any]         # the output's Options once loaded
    description: str = ""
    route: RouteConfig = field(default_factory=RouteConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    on_failure: str = "block"                # block | skip: a patient's later messages behind a failed one
    doc: YamlDoc | None = field(default=None, compare=False, repr=False)  # where each value was written


@dataclass(frozen=True)
class Config:
    """The whole installation's configuration, loaded once by `load_config`, validated (schema, then
    wiring) and frozen: paths, broker, store, ops, retention, and every channel and destination.
    """

    root: Path
    config_dir: Path
    broker: BrokerSettings
    store: StoreSettings
    var_dir: Path
    mappings_dir: Path
    nomenclatures_dir: Path
    fhir_base: str
    timezone: str
    log_level: str
    ops: OpsSettings = field(default_factory=OpsSettings)
    retention: Retention = field(default_factory=Retention)
    shutdown_grace_s: float = 25.0  # SIGTERM: how long in-process work may take to finish
    channels: tuple[ChannelConfig, ...] = field(default_factory=tuple)
    destinations: MappingProxyType[str, DestinationConfig] = field(default_factory=lambda: MappingProxyType({}))

    def channel(self, channel_id: str) -> ChannelConfig:
        for ch in self.channels:
            if ch.id == channel_id:
                return ch
        raise KeyError(channel_id)


def _rel(root: Path, config_dir: Path, path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _resolve_url(url: str, root: Path) -> str:
    """Make a relative `sqlite:///relative/path` relative to the project root, not the cwd."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        return prefix + str((root / url[len(prefix):]).resolve())
    return url


def _destination(dest_id: str, doc: YamlDoc, kind: str, cls: Any, root: Path) -> DestinationConfig:
    """The destination of `doc`; its `route.when` is compiled (and checked) by the route layer."""
    d = doc.data
    options = build_options(tuple(getattr(cls, "options_spec", ())), d[kind], root)  # paths: from the root
    r, t, b = (d.get(k) or {} for k in ("route", "retry", "circuit_breaker"))
    when = r.get("when")
    return DestinationConfig(
        id=dest_id, file=doc.file, kind=kind, options=options, doc=doc,
        description=d.get("description", ""),
        route=RouteConfig(tuple(r.get("channels", ())), tuple(r.get("types", ())), tuple(r.get("facilities", ())),
                          MappingProxyType(when) if when is not None else None),
        retry=RetryConfig(int(t.get("attempts", RetryConfig.attempts)),
                          float(t.get("backoff_max_s", RetryConfig.backoff_max_s)),
                          tuple(float(x) for x in t.get("delays_s", RetryConfig.delays_s)),
                          float(t.get("max_age_h", RetryConfig.max_age_h))),
        breaker=BreakerConfig(int(b.get("failures", BreakerConfig.failures)),
                              float(b.get("probe_max_s", BreakerConfig.probe_max_s))),
        on_failure=d.get("on_failure", "block"),
    )


def load_config(config_dir: Path | str | None = None, env: dict[str, str] | None = None) -> Config:
    """Load and validate the whole configuration; raise ConfigErrors listing every problem."""
    env = dict(os.environ) if env is None else env
    config_dir = Path(config_dir or env.get("WASLA_CONFIG") or "config").resolve()
    root = config_dir.parent
    schema_dir = config_dir / "schema"
    errors: list[ConfigError] = []
    inputs, outputs = connectors("inputs"), connectors("outputs")

    def load(path: Path, schema: str) -> YamlDoc | None:
        try:
            doc = load_yaml(path, display=_rel(root, config_dir, path), env=env)
        except ConfigErrors as exc:
            errors.extend(exc.errors)
            return None
        except ConfigError as exc:
            errors.append(exc)
            return None
        found = validate(doc, composed_schema(schema_dir / schema, inputs, outputs))
        errors.extend(found)
        return None if found else doc

    main_path = config_dir / "wasla.yaml"
    engine_doc = load(main_path, "wasla.schema.json") if main_path.exists() else None
    data: dict[str, Any] = engine_doc.data if engine_doc and isinstance(engine_doc.data, dict) else {}
    b, s, p, f = (data.get(k) or {} for k in ("broker", "store", "paths", "fhir"))
    broker = BrokerSettings(
        url=env.get("WASLA_BROKER_URL") or b.get("url", BrokerSettings.url),
        prefetch=b.get("prefetch", BrokerSettings.prefetch),
        shards=b.get("shards", BrokerSettings.shards),
        batch_max=int(b.get("batch_max", BrokerSettings.batch_max)),
        batch_linger_ms=float(b["batch_linger_ms"]) if "batch_linger_ms" in b else None,
        confirm_timeout=float(b.get("confirm_timeout", BrokerSettings.confirm_timeout)),
        queue_type=env.get("WASLA_BROKER_QUEUE_TYPE") or b.get("queue_type", BrokerSettings.queue_type),
    )
    if broker.queue_type not in ("classic", "quorum"):  # the schema checks the file; this is the variable
        errors.append(ConfigError(f"WASLA_BROKER_QUEUE_TYPE: expected classic or quorum, got '{broker.queue_type}'",
                                  file="environment"))
    store = StoreSettings(
        url=_resolve_url(env.get("WASLA_STORE_URL") or s.get("url", StoreSettings.url), root),
        group_commit_ms=float(s.get("group_commit_ms", StoreSettings.group_commit_ms)),
    )

    default_retention = Retention(**(data.get("retention") or {}))
    destinations: dict[str, DestinationConfig] = {}
    for path in sorted((config_dir / "destinations").glob("*.yaml")):
        doc = load(path, "destination.schema.json")
        if doc is None:
            continue
        kinds = [k for k in doc.data if k in outputs]
        if len(kinds) != 1:
            errors.append(doc.error("expected exactly one connector: " + ", ".join(outputs), []))
            continue
        destinations[path.stem] = _destination(path.stem, doc, kinds[0], outputs[kinds[0]], root)

    mappings_dir = (root / p.get("mappings", "mappings")).resolve()
    accepts = accepted_types(mappings_dir, env)
    channels: list[ChannelConfig] = []
    claimed: dict[tuple[Any, ...], str] = {}
    for path in sorted((config_dir / "channels").glob("*.yaml")):
        doc = load(path, "channel.schema.json")
        if doc is None:
            continue
        d = doc.data
        kind = next(iter(d["input"]))
        spec = tuple(getattr(inputs[kind], "options_spec", ()))
        inp = build_options(spec, d["input"][kind], root)  # paths (folder, certificates): from the project root
        single, table = dispatch_table(doc, accepts, mappings_dir, errors)
        ch = ChannelConfig(
            id=path.stem, file=doc.file, input_kind=kind, input=inp, mapping=single,
            mappings=MappingProxyType(table),
            unmapped_types=d["pipeline"].get("unmapped_types", ChannelConfig.unmapped_types),
            outputs=tuple(d.get("output", ())), description=d.get("description", ""),
            enabled=d.get("enabled", True), unmapped_codes=d["pipeline"].get("unmapped_codes", "pass"),
            invalid_identifiers=d["pipeline"].get("invalid_identifiers", "flag"),
            sender=d["pipeline"].get("sender", ""),
            default_identifier_type=d["pipeline"].get("default_identifier_type", ""),
            input_sender=str(pipeline_options(inp).sender) if getattr(inputs[kind], "names_sender", False) else "",
            retention=replace(default_retention, **d["retention"]) if d.get("retention") else None,
        )
        for i, dest in enumerate(ch.outputs):
            if dest not in destinations:
                known = ", ".join(sorted(destinations)) or "none defined in config/destinations/"
                errors.append(doc.error(f"unknown destination '{dest}' (known: {known})", ["output", i]))
        for resource, option, key in claims_of(spec, inp) if ch.enabled else ():
            if (resource, *key) in claimed:
                errors.append(doc.error(f"{resource} {key[-1]} already used by channel '{claimed[resource, *key]}'",
                                        ["input", kind, option]))
            claimed[resource, *key] = ch.id
        channels.append(ch)

    for dc in destinations.values():
        for ch_id in dc.route.channels:
            if not any(ch.id == ch_id for ch in channels):
                errors.append(ConfigError(f"route.channels: unknown channel '{ch_id}'", file=dc.file))
    for ch in channels:
        if ch.enabled and not ch.outputs and not any(ch.id in d.route.channels for d in destinations.values()):
            errors.append(ConfigError("no destination takes this channel's messages: list one under output:,"
                                      " or name the channel in a destination's route.channels", file=ch.file))
    if errors:
        raise ConfigErrors(errors)
    return Config(
        root=root,
        config_dir=config_dir,
        broker=broker,
        store=store,
        var_dir=(root / p.get("var", "var")).resolve(),
        mappings_dir=mappings_dir,
        nomenclatures_dir=(root / p.get("nomenclatures", "nomenclatures")).resolve(),
        fhir_base=f.get("base", "https://fhir.wasla.ma"),
        timezone=f.get("timezone", "Africa/Casablanca"),
        log_level=(data.get("log") or {}).get("level", "info"),
        retention=default_retention,
        shutdown_grace_s=float((data.get("shutdown") or {}).get("grace_s", 25.0)),
        ops=OpsSettings(host=(data.get("ops") or {}).get("host", OpsSettings.host),
                        port=int(env.get("WASLA_OPS_PORT") or (data.get("ops") or {}).get("port", OpsSettings.port)),
                        secure_cookies=bool((data.get("ops") or {}).get("secure_cookies", False))),
        channels=tuple(channels),
        destinations=MappingProxyType(destinations),
    )
