"""Routing: which destinations take a message (type, facility, condition), and the example destinations."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.config import load_config
from engine.errors import ConfigErrors
from engine.hl7v2.er7 import parse
from engine.pipeline.route import Router, type_matches
from engine.runtime import make_converter
from tests.delivery_support import adt_msg, oru_msg
from tests.support import ROOT, make_project


def test_type_patterns() -> None:
    assert type_matches((), "ADT^A08")
    assert type_matches(("ADT^*",), "ADT^A08") and type_matches(("ADT^A08",), "ADT^A08")
    assert not type_matches(("ADT^A01",), "ADT^A08") and not type_matches(("ORU^*",), "ADT^A08")
    assert type_matches(("FHIR^*",), "FHIR^Patient")


def _router(tmp_path: Path, destinations: dict[str, str]) -> Router:
    project = make_project(tmp_path)
    for name, text in destinations.items():
        (project / "config" / "destinations" / f"{name}.yaml").write_text(text)
    ch = project / "config" / "channels" / "adt-mllp.yaml"
    ch.write_text(ch.read_text().replace("  - archive-ndjson\n", "".join(f"  - {n}\n" for n in destinations)))
    config = load_config(project / "config", env={})
    converter = make_converter(config)
    return Router(config, lambda msg: converter.context(msg, datetime.now(UTC)))


def test_forwards_v2_is_what_the_output_declares(tmp_path: Path) -> None:
    """The destinations a passed (unconverted) message may reach: those whose output declares
    `Capabilities.forwards_v2` (mllp), never one taking FHIR (ndjson, fhir), whatever its id (issue 25)."""
    router = _router(tmp_path, {
        "lis": "mllp: {host: 127.0.0.1, port: 2576}\n",
        "mllp-archive": "ndjson: {path: var/m}\n",
        "server": "fhir: {base_url: 'http://127.0.0.1:8080/fhir'}\n",
    })
    assert [d for d in ("lis", "mllp-archive", "server", "nope") if router.forwards_v2(d)] == ["lis"]


def test_route_by_type_facility_and_condition(tmp_path: Path) -> None:
    router = _router(tmp_path, {
        "all": "ndjson: {path: var/a}\n",
        "updates": "ndjson: {path: var/u}\nroute: {types: [ADT^A08]}\n",
        "chu": "ndjson: {path: var/c}\nroute: {facilities: [CHU-IBN-SINA]}\n",
        "inpatients": "ndjson: {path: var/i}\nroute: {when: {equals: {PV1-2: I}}}\n",
        "outpatients": "ndjson: {path: var/o}\nroute: {when: {equals: {PV1-2: O}}}\n",
    })
    a01 = parse(adt_msg(1, "A01", "c1", "X").decode())
    taken, refused = router.route("adt-mllp", "ADT^A01", a01.sending_facility, a01)
    assert taken == ("all", "chu", "inpatients")
    assert refused == {"updates": "type ADT^A01 not in ADT^A08", "outpatients": "route.when is false"}
    other = parse(adt_msg(1, "A08", "c2", "X").decode().replace("CHU-IBN-SINA|WASLA", "CLINIQUE|WASLA"))
    taken, refused = router.route("adt-mllp", "ADT^A08", other.sending_facility, other)
    assert taken == ("all", "inpatients", "updates")  # in the order of the destination files
    assert refused["chu"] == "sending facility not in route.facilities"
    taken, refused = router.route("adt-mllp", "FHIR^Patient", "", None)  # no v2 message: no condition holds
    assert "inpatients" not in taken and refused["inpatients"] == "route.when needs an HL7 v2 message"
    assert router.route("nope", "ADT^A01", "", a01) == ((), {})
    oru = parse(oru_msg(1, "c3").decode())
    assert router.route("adt-mllp", "ORU^R01", oru.sending_facility, oru)[0] == ("all",)  # LABO, no PV1


def test_a_bad_route_is_a_config_error_with_its_place(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    (project / "config" / "destinations" / "bad.yaml").write_text(
        "ndjson: {path: var/b}\nroute:\n  types: [ADT-A01]\n  channels: [nope]\n")
    with pytest.raises(ConfigErrors) as err:
        load_config(project / "config", env={})
    text = str(err.value)
    assert "bad.yaml:3" in text and "ADT^A08, ADT^* or ORU^R01" in text


def test_shipped_example_destinations_are_valid(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    examples = sorted((ROOT / "config" / "examples" / "destinations").glob("*.yaml"))
    assert len(examples) == 7
    for path in examples:
        shutil.copy(path, project / "config" / "destinations" / path.name)
    for path in sorted((ROOT / "config" / "examples" / "channels").glob("*.yaml")):  # the claims examples' feeds
        shutil.copy(path, project / "config" / "channels" / path.name)
    ch = project / "config" / "channels" / "adt-mllp.yaml"
    ch.write_text(ch.read_text().replace("  - archive-ndjson\n", "".join(f"  - {p.stem}\n" for p in examples)))
    config = load_config(project / "config", env={"CLAIMS_AMQP_PASSWORD": "x"})
    assert {d.kind for d in config.destinations.values()} == {"fhir", "amqp", "ndjson", "mllp", "claims", "insurer"}
    dmp = config.destinations["dmp-fhir"]
    assert dmp.retry.delays_s == (5, 30, 120, 600, 1800) and dmp.on_failure == "block"
    assert config.destinations["cnss-claims-amqp"].options["url"] == "amqps://wasla:x@mq.example.ma/claims"


def test_a_bad_condition_is_reported_at_its_line(tmp_path: Path) -> None:
    """A route.when the mapping language cannot compile is a file:line:col error of the route layer
    (`wasla check`, `wasla run`), no longer of the config loader."""
    from engine.pipeline.route import check_conditions

    project = make_project(tmp_path)
    dest = project / "config" / "destinations" / "archive-ndjson.yaml"
    dest.write_text(dest.read_text() + "route:\n  when: {valued: NOT-A-PATH}\n")
    config = load_config(project / "config", env={})
    (error,) = check_conditions(config)
    assert error.file == str(dest) and (error.line, error.field) == (7, "route.when.valued")
