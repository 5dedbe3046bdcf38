"""Fixtures for the real services: RabbitMQ and PostgreSQL are required in CI, skipped (with a reason) elsewhere."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

IN_CI = bool(os.environ.get("CI"))
RABBITMQ_URL = os.environ.get("WASLA_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
POSTGRES_ADMIN = os.environ.get("WASLA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _need(service: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    if IN_CI:
        pytest.fail(f"{service} is required in CI but nothing listens on {host}:{port}")
    pytest.skip(f"{service} not running on {host}:{port} (required in CI)")


@pytest.fixture
def rabbitmq_url() -> Iterator[str]:
    """The shared RabbitMQ, with every wasla.* queue deleted before and after the test."""
    _need("RabbitMQ", "127.0.0.1", 5672)
    _delete_wasla_queues()
    yield RABBITMQ_URL
    _delete_wasla_queues()


def _delete_wasla_queues() -> None:
    from tests.support import delete_wasla_queues

    delete_wasla_queues(RABBITMQ_URL)


@pytest.fixture(scope="session")
def fhir_base() -> Iterator[str]:
    """A real FHIR R4 server for the session (../shared/tools/fhir-server); tests reset it as they need."""
    from tests.support import TOOLS

    if not (TOOLS / "fhir-server").exists():
        pytest.skip(f"{TOOLS} is absent: the FHIR server tool comes with ../shared")
    from tests.fhirserver import fhir_server

    with fhir_server() as base:
        yield base


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    _need("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    name = f"wasla_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """Each journal test runs on both backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/wasla.db"
    return str(request.getfixturevalue("postgres_url"))
