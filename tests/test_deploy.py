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


def test_production_profile_is_a_three_node_cluster_with_quorum_queues_and_scaled_workers() -> None:
    compose = YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    nodes = [f"rabbitmq-{n}" for n in (1, 2, 3)]
    conf = (ROOT / "config" / "rabbitmq" / "cluster.conf").read_text()
    for node in nodes:
        svc = services[node]
        assert svc["profiles"] == ["production"] and svc["hostname"] == node
        assert "./config/rabbitmq/cluster.conf:/etc/rabbitmq/conf.d/20-cluster.conf:ro" in svc["volumes"]
        assert f"= rabbit@{node}" in conf
    assert len({services[n]["environment"]["RABBITMQ_ERLANG_COOKIE"] for n in nodes}) == 1  # one cluster
    for role, replicas in (("intake", 2), ("transform", 3), ("deliver", 2)):
        svc = services[f"{role}-cluster"]
        assert svc["profiles"] == ["production"] and svc["deploy"]["replicas"] == replicas
        assert svc["command"] == ["wasla", "run", "--role", role]
        env = svc["environment"]
        assert env["WASLA_BROKER_QUEUE_TYPE"] == "quorum"
        assert [u.split("@")[1].split(":")[0] for u in env["WASLA_BROKER_URL"].split(";")] == nodes
        assert services[role]["profiles"] == ["single"]  # the two shapes never run together
        assert svc["stop_grace_period"] == "30s"  # the engine's drain (shutdown.grace_s 25 s) fits in it


@pytest.mark.parametrize("profile", ["single", "production"])
def test_compose_config_parses(profile: str) -> None:
    """`docker compose config` (or docker-compose) accepts the file with each profile."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        cmd = ["docker", "compose", "--profile", profile, "config", "-q"]
    elif shutil.which("docker-compose"):
        cmd = ["docker-compose", "--profile", profile, "config", "-q"]
    else:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
