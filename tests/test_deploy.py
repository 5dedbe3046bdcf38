"""docker-compose.yml is what production runs: it must parse and wire every role to RabbitMQ and PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from ruamel.yaml import YAML

from tests.support import ROOT


def test_compose_wires_every_role() -> None:
    """RabbitMQ (management), PostgreSQL, and intake/transform/deliver as separate services, env wired."""
    compose = YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["rabbitmq"]["image"].endswith("-management")
    assert services["postgres"]["image"].startswith("postgres:")
    for role in ("intake", "transform", "deliver"):
        svc = services[role]
        assert svc["command"] == ["wasla", "run", "--role", role]
        assert svc["environment"]["WASLA_BROKER_URL"].startswith("amqp://")
        assert svc["environment"]["WASLA_STORE_URL"].startswith("postgresql://")


def test_compose_config_parses() -> None:
    """`docker compose config` (or docker-compose) accepts the file."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        cmd = ["docker", "compose", "config", "-q"]
    elif shutil.which("docker-compose"):
        cmd = ["docker-compose", "config", "-q"]
    else:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
