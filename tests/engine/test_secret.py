"""Secrets from the environment or from files (NAME_FILE, as Docker and Kubernetes mount them)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.secret import secret
from tests.support import WASLA, make_project


def test_the_variable_wins_then_the_file_then_nothing(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text("from-the-file\n")
    assert secret("TOKEN", {"TOKEN": "from-env", "TOKEN_FILE": str(f)}) == "from-env"
    assert secret("TOKEN", {"TOKEN": "", "TOKEN_FILE": str(f)}) == "from-the-file"  # one newline dropped
    assert secret("TOKEN", {}) == ""


def test_an_unreadable_file_names_the_variable_and_the_path_never_a_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"TOKEN_FILE: cannot read .*/absent \(FileNotFoundError\)"):
        secret("TOKEN", {"TOKEN_FILE": str(tmp_path / "absent")})


def test_config_and_check_take_secrets_from_files_and_print_none(tmp_path: Path) -> None:
    """A destination's client secret and a `${VAR}` in its YAML come from mounted files; `wasla check`
    is content and shows neither; a file that is not there is named, with its variable."""
    project = make_project(tmp_path)
    (project / "config" / "destinations" / "dmp.yaml").write_text(
        "fhir:\n  base_url: ${DMP_BASE}\n  auth:\n    type: client_credentials\n"
        "    token_url: https://auth.example.ma/token\n    client_id: wasla\n    client_secret_env: DMP_SECRET_Y\n")
    ch = project / "config" / "channels" / "adt-mllp.yaml"
    ch.write_text(ch.read_text().replace("  - archive-ndjson\n", "  - archive-ndjson\n  - dmp\n"))
    secrets_dir = tmp_path / "run-secrets"
    secrets_dir.mkdir()
    (secrets_dir / "dmp_secret").write_text("s3cr3t-from-file\n")
    (secrets_dir / "dmp_base").write_text("https://dmp.example.ma/fhir\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMP_")}
    env |= {"DMP_SECRET_Y_FILE": str(secrets_dir / "dmp_secret"), "DMP_BASE_FILE": str(secrets_dir / "dmp_base")}
    ok = subprocess.run([WASLA, "check", "--config", str(project / "config")], capture_output=True, text=True,
                        cwd=project, env=env, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "s3cr3t-from-file" not in ok.stdout + ok.stderr
    from engine.config import load_config

    assert load_config(project / "config", env=env).destinations["dmp"].options["base_url"] == \
        "https://dmp.example.ma/fhir"
    env["DMP_SECRET_Y_FILE"] = str(secrets_dir / "gone")
    gone = subprocess.run([WASLA, "check", "--config", str(project / "config")], capture_output=True, text=True,
                          cwd=project, env=env, timeout=60)
    assert gone.returncode == 2
    assert "DMP_SECRET_Y_FILE: cannot read" in gone.stderr and "s3cr3t" not in gone.stdout + gone.stderr
