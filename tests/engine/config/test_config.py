"""Configuration errors are reported as file:line: field: message, all of them, and nothing starts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from engine.config import load_config
from engine.config.yamlfile import load_yaml
from engine.errors import ConfigErrors
from tests.support import WASLA, make_project

CHANNEL = "config/channels/adt-mllp.yaml"


def _write_channel(project: Path, text: str) -> None:
    (project / CHANNEL).write_text(text)


def _check(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WASLA, "check", "--config", str(project / "config")], cwd=project,
                          capture_output=True, text=True, timeout=60)


BROKEN = """\
description: broken on purpose
input:
  mllp:
    host: 127.0.0.1
    prot: 2575
pipeline:
  mapping: adt
  mapingg: nope
output:
  - archive-ndjson
enabled: "yes"
"""


class TestLoadConfig:
    def test_shipped_config_is_valid(self) -> None:
        """The sample configuration loads: one MLLP channel on 127.0.0.1:2575 to NDJSON."""
        config = load_config(Path(__file__).resolve().parents[3] / "config", env={})
        (ch,) = config.channels
        assert (ch.id, ch.input_kind, ch.input["port"], ch.outputs) == ("adt-mllp", "mllp", 2575, ("archive-ndjson",))
        assert config.broker.url == "memory://" and config.store.url.endswith("/var/wasla.db")

    def test_every_problem_with_its_line(self, tmp_path: Path) -> None:
        """Unknown keys, a missing port and a wrong type are all reported, each at its own line."""
        project = make_project(tmp_path)
        _write_channel(project, BROKEN)
        with pytest.raises(ConfigErrors) as info:
            load_config(project / "config", env={})
        lines = [str(e) for e in info.value.errors]
        assert lines == [
            f"{project}/{CHANNEL}:3:3: input.mllp.port: missing required key 'port' in mllp",
            f"{project}/{CHANNEL}:5:5: input.mllp.prot: unknown key 'prot' (did you mean 'port'?)",
            f"{project}/{CHANNEL}:8:3: pipeline.mapingg: unknown key 'mapingg' (did you mean 'mapping'?)",
            f"{project}/{CHANNEL}:11:10: enabled: expected true or false, got a string",
        ]

    def test_env_interpolation(self, tmp_path: Path) -> None:
        """${VAR} is replaced from the environment; an unset one without default is an error at its line."""
        project = make_project(tmp_path)
        text = ("input:\n  mllp:\n    port: 2575\n    host: ${MLLP_HOST}\n"
                "pipeline:\n  mapping: adt\noutput: [archive-ndjson]\n")
        _write_channel(project, text)
        assert load_config(project / "config", env={"MLLP_HOST": "0.0.0.0"}).channels[0].input["host"] == "0.0.0.0"
        with pytest.raises(ConfigErrors) as info:
            load_config(project / "config", env={})
        assert str(info.value) == (f"{project}/{CHANNEL}:4:11: input.mllp.host: environment variable MLLP_HOST"
                                   " is not set (write ${MLLP_HOST:-default} for a default)")

    def test_wiring_errors(self, tmp_path: Path) -> None:
        """An unknown destination or mapping is reported at the line that names it."""
        project = make_project(tmp_path)
        text = (project / CHANNEL).read_text().replace("archive-ndjson", "nowhere").replace("adt", "oru_r99")
        _write_channel(project, text)
        with pytest.raises(ConfigErrors) as info:
            load_config(project / "config", env={})
        messages = [f"{e.line}: {e.message}" for e in info.value.errors]
        assert messages == ["8: no mapping 'oru_r99' in mappings/",
                            "10: unknown destination 'nowhere' (known: archive-ndjson)"]

    def test_environment_overrides_urls(self, tmp_path: Path) -> None:
        """WASLA_BROKER_URL and WASLA_STORE_URL win over wasla.yaml."""
        project = make_project(tmp_path)
        config = load_config(project / "config", env={"WASLA_BROKER_URL": "amqp://u:p@h:5672//",
                                                       "WASLA_STORE_URL": "postgresql://u@h/db"})
        assert (config.broker.url, config.store.url) == ("amqp://u:p@h:5672//", "postgresql://u@h/db")


class TestCheckCommand:
    def test_check_ok(self, tmp_path: Path) -> None:
        """`wasla check` on the shipped configuration says ok and exits 0."""
        project = make_project(tmp_path)
        result = _check(project)
        assert result.returncode == 0, result.stderr
        mappings = len(list((project / "mappings").glob("*/mapping.yaml")))  # every shipped mapping is compiled
        assert mappings >= 4
        csvmaps = len(list((project / "mappings").glob("*/csvmap.yaml")))  # csv_lab, csv_billing
        assert csvmaps >= 2
        assert result.stdout.strip() == (f"ok: 1 channel(s), 1 destination(s), {mappings} mapping(s), "
                                         f"{csvmaps} CSV map(s)")

    def test_check_broken(self, tmp_path: Path) -> None:
        """A broken channel YAML: every problem as file:line, exit 2, no traceback."""
        project = make_project(tmp_path)
        _write_channel(project, BROKEN)
        result = _check(project)
        assert result.returncode == 2
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 4 and all(line.startswith(f"{CHANNEL}:") for line in lines)
        assert "Traceback" not in result.stderr

    def test_run_refuses_with_the_same_message(self, tmp_path: Path) -> None:
        """`wasla run` prints the same problems, exits 2 and starts nothing."""
        project = make_project(tmp_path)
        _write_channel(project, BROKEN)
        run = subprocess.run([WASLA, "run", "--config", str(project / "config")], cwd=project,
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 2
        assert run.stderr == _check(project).stderr
        assert not (project / "var").exists()

    def test_invalid_yaml(self, tmp_path: Path) -> None:
        """A YAML syntax error is reported with its line and column."""
        project = make_project(tmp_path)
        _write_channel(project, "input:\n  mllp: {port: 2575\npipeline: x\n")
        result = _check(project)
        assert result.returncode == 2
        assert result.stderr.startswith(f"{CHANNEL}:3:")
        assert "invalid YAML" in result.stderr

    def test_mapping_error_has_file_and_line(self, tmp_path: Path) -> None:
        """A wrong FHIR target path in a mapping is a file:line error at `wasla check`."""
        project = make_project(tmp_path)
        mapping = project / "mappings" / "adt" / "mapping.yaml"
        mapping.write_text(mapping.read_text().replace("to: patient, ref: patient}", "to: patinet, ref: patient}", 1))
        result = _check(project)
        assert result.returncode == 2
        line, col = next((i, t.index("patinet") + 1)
                         for i, t in enumerate(mapping.read_text().splitlines(), 1) if "patinet" in t)
        assert result.stderr.strip() == (
            f"mappings/adt/mapping.yaml:{line}:{col}: resources[3].rules[0].to: "
            "RelatedPerson has no element 'patinet' (FHIR R4 RelatedPerson)")

    def test_segment_map_error_points_into_the_segment_map(self, tmp_path: Path) -> None:
        """A wrong path in an included segment map is reported at that file's line, once per use."""
        project = make_project(tmp_path)
        seg = project / "mappings" / "segments" / "pid_patient.yaml"
        seg.write_text(seg.read_text().replace("to: birthDate,", "to: birthdate,"))
        result = _check(project)
        assert result.returncode == 2
        line, col = next((i, t.index("birthdate") + 1)
                         for i, t in enumerate(seg.read_text().splitlines(), 1) if "birthdate" in t)
        index = next(i for i, r in enumerate(load_yaml(seg).data["rules"]) if r.get("to") == "birthdate")
        assert (f"mappings/segments/pid_patient.yaml:{line}:{col}: rules[{index}].to: "
                "Patient has no element 'birthdate' (FHIR R4 Patient)") in result.stderr


def test_check_names_missing_secrets_and_certificates_without_printing_secrets(tmp_path: Path) -> None:
    """A FHIR destination whose client secret is not in the environment, and whose client certificate is
    missing: `wasla check` names the variable and the file; the secrets set elsewhere never appear."""
    import os

    project = make_project(tmp_path)
    (project / "config" / "destinations" / "dmp.yaml").write_text(
        "fhir:\n  base_url: https://dmp.example.ma/fhir\n  auth:\n    type: client_credentials\n"
        "    token_url: https://auth.example.ma/token\n    client_id: wasla\n    client_secret_env: DMP_SECRET_X\n"
        "  tls: {ca: tls/ca.pem}\n")
    ch = project / "config" / "channels" / "adt-mllp.yaml"
    ch.write_text(ch.read_text().replace("  - archive-ndjson\n", "  - archive-ndjson\n  - dmp\n"))
    env = {k: v for k, v in os.environ.items() if k != "DMP_SECRET_X"}
    missing = subprocess.run([WASLA, "check", "--config", str(project / "config")], capture_output=True,
                             text=True, cwd=project, env=env, timeout=60)
    assert missing.returncode == 2
    assert "environment variable DMP_SECRET_X is not set (auth.client_secret_env)" in missing.stderr
    assert "tls.ca: no file" in missing.stderr and "dmp.yaml" in missing.stderr
    (project / "tls").mkdir()
    (project / "tls" / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    ok = subprocess.run([WASLA, "check", "--config", str(project / "config")], capture_output=True, text=True,
                        cwd=project, env={**env, "DMP_SECRET_X": "s3cr3t-value"}, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "s3cr3t-value" not in ok.stdout + ok.stderr


def test_a_control_character_in_yaml_is_a_config_error_with_its_place(tmp_path: Path) -> None:
    """Found by the mapping compiler's fuzzing: ruamel's ReaderError escaped as a traceback."""
    from engine.config.yamlfile import load_yaml
    from engine.errors import ConfigError

    bad = tmp_path / "adt-mllp.yaml"
    bad.write_bytes(b"input:\n  mllp:\n    port: 25\x1f75\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(bad, display="config/channels/adt-mllp.yaml")
    assert str(info.value) == ("config/channels/adt-mllp.yaml:3:13: invalid YAML: character #x001f"
                               " is not allowed in YAML text")


def _pipeline(project: Path, pipeline: str) -> None:
    """The shipped channel with `pipeline:` replaced by `pipeline` (its indented lines)."""
    _write_channel(project, f"input:\n  mllp:\n    port: 2575\npipeline:\n{pipeline}output: [archive-ndjson]\n")


def _errors(project: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_config(project / "config", env={})
    return [f"{e.line}: {e.field}: {e.message}" if e.field else f"{e.line}: {e.message}" for e in info.value.errors]


class TestDispatch:
    """`pipeline.mapping`, `pipeline.mappings` and each mapping's `accepts:`: which mapping a type goes to."""

    def test_one_mapping_takes_every_type_as_before(self, tmp_path: Path) -> None:
        """`mapping: adt` gives adt every type (one it does not accept fails in it, as it always has)."""
        project = make_project(tmp_path)
        (ch,) = load_config(project / "config", env={}).channels
        assert (ch.mapping, ch.unmapped_types) == ("adt", "reject")
        assert [ch.mapping_for(t) for t in ("ADT^A01", "ORU^R01", "ZZZ^Z01")] == ["adt", "adt", "adt"]
        assert ch.mapping_names() == ("adt",)

    def test_one_mapping_passing_the_rest(self, tmp_path: Path) -> None:
        """`mapping: adt` with `unmapped_types: pass`: the types adt accepts go to it, the others to none."""
        project = make_project(tmp_path)
        _pipeline(project, "  mapping: adt\n  unmapped_types: pass\n")
        (ch,) = load_config(project / "config", env={}).channels
        assert [ch.mapping_for(t) for t in ("ADT^A01", "ADT^A40", "ADT^A99", "ORU^R01")] == ["adt", "adt", None, None]

    def test_exact_pattern_beats_wildcard(self, tmp_path: Path) -> None:
        """ADT^A08 named exactly goes to its own mapping; other ADT triggers to the `ADT^*` one."""
        project = make_project(tmp_path)
        shutil.copytree(project / "mappings" / "adt", project / "mappings" / "adt_update")
        _pipeline(project, '  mappings:\n    "ADT^*": adt\n    "ADT^A08": adt_update\n    "ORU^R01": oru_r01\n')
        (ch,) = load_config(project / "config", env={}).channels
        assert ch.mapping == ""
        assert [ch.mapping_for(t) for t in ("ADT^A08", "ADT^A01", "ADT^Z99", "ORU^R01", "ORU^R30", "VXU^V04")] == [
            "adt_update", "adt", "adt", "oru_r01", None, None]
        assert ch.mapping_names() == ("adt", "adt_update", "oru_r01")

    def test_accepts_chooses_without_mapping_or_mappings(self, tmp_path: Path) -> None:
        """Neither key: each type goes to the mapping whose `accepts:` lists it; an unlisted type to none."""
        project = make_project(tmp_path)
        _pipeline(project, "  unmapped_types: pass\n")
        (ch,) = load_config(project / "config", env={}).channels
        assert [ch.mapping_for(t) for t in ("ADT^A01", "ORU^R01", "ORM^O01", "OML^O21", "ADT^A99", "ZZZ^Z01")] == [
            "adt", "oru_r01", "orders", "orders", None, None]
        shipped = tuple(sorted(p.parent.name for p in (project / "mappings").glob("*/mapping.yaml")))
        assert {"adt", "orders", "oru_r01"} <= set(shipped)
        assert (ch.unmapped_types, ch.mapping_names()) == ("pass", shipped)

    def test_two_mappings_accepting_one_type_fail_at_load(self, tmp_path: Path) -> None:
        """Choosing by `accepts:`, a type two mappings accept is an error at the channel's `pipeline:` line."""
        project = make_project(tmp_path)
        shutil.copytree(project / "mappings" / "oru_r01", project / "mappings" / "oru_lab")
        _pipeline(project, "  unmapped_codes: pass\n")
        assert _errors(project) == ["4: pipeline: mappings 'oru_lab' and 'oru_r01' both accept ORU^R01: name the one"
                                    " for each type under pipeline.mappings"]
        _pipeline(project, '  mappings: {"ORU^R01": oru_lab}\n')  # naming one settles it
        assert load_config(project / "config", env={}).channels[0].mapping_for("ORU^R01") == "oru_lab"

    def test_mapping_and_mappings_together_fail_at_load(self, tmp_path: Path) -> None:
        project = make_project(tmp_path)
        _pipeline(project, '  mapping: adt\n  mappings:\n    "ORU^R01": oru_r01\n')
        assert _errors(project) == ["6: pipeline.mappings: write mapping or mappings, not both"]

    def test_unknown_mapping_bad_pattern_and_unaccepted_type_at_their_lines(self, tmp_path: Path) -> None:
        """Each wrong entry of `mappings` at its own line, as `wasla check` prints it."""
        project = make_project(tmp_path)
        _pipeline(project, '  mappings:\n    "ADT^*": adt\n    "ORU^R01": oru_r99\n    "ORU-R01": oru_r01\n'
                           '    "ADT^A*": adt\n    "ORM^O01": adt\n  unmapped_types: drop\n')
        assert _errors(project) == [
            "8: pipeline.mappings.ORU-R01: expected a message type like ORU^R01, or ADT^* for every trigger,"
            " got 'ORU-R01'",
            "9: pipeline.mappings.ADT^A*: expected a message type like ORU^R01, or ADT^* for every trigger,"
            " got 'ADT^A*'",
            "11: pipeline.unmapped_types: expected one of: reject, pass",
        ]
        _pipeline(project, '  mappings:\n    "ADT^*": adt\n    "ORU^R01": oru_r99\n    "ORM^O01": adt\n')
        accepts = ", ".join(load_yaml(project / "mappings" / "adt" / "mapping.yaml").data["accepts"])
        assert accepts.startswith("ADT^A01, ADT^A02")
        assert _errors(project) == [
            "7: pipeline.mappings.ORU^R01: no mapping 'oru_r99' in mappings/",
            f"8: pipeline.mappings.ORM^O01: mapping 'adt' does not accept ORM^O01 (it accepts: {accepts})",
        ]
        result = _check(project)
        assert result.returncode == 2 and result.stderr.splitlines()[0].startswith(
            f"{CHANNEL}:7:16: pipeline.mappings.ORU^R01: no mapping 'oru_r99'")
