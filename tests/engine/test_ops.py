"""The ops endpoint of a running engine: /metrics counts what was sent, /health answers load balancers."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.delivery_support import adt_msg, send_all
from tests.support import engine, make_project, ops_port, port_of, wait_port


def _value(metrics: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in metrics.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_match_what_was_sent_and_health_answers(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    (project / "config" / "destinations" / "archive-ndjson.yaml").write_text(
        "ndjson: {path: var/out/archive-ndjson}\nroute: {types: [ADT^A01]}\n")
    with engine(project):
        base = f"http://127.0.0.1:{ops_port(project)}"
        wait_port(ops_port(project))
        assert httpx.get(f"{base}/health/live").status_code == 200
        assert httpx.get(f"{base}/health/ready").json() == {"status": "ready",
                                                            "roles": ["intake", "transform", "deliver"]}
        before = time.time()
        msgs = [adt_msg(n, "A01", f"M{n}", "X") for n in range(7)] + [adt_msg(9, "A08", "M9", "X")] * 1
        assert send_all(port_of(project), msgs) == {"AA": 8}
        deadline = time.monotonic() + 20
        text = ""
        while time.monotonic() < deadline:
            text = httpx.get(f"{base}/metrics").text
            if _value(text, "wasla_delivered_total", destination="archive-ndjson") >= 7:
                break
            time.sleep(0.2)
        assert _value(text, "wasla_received_total", channel="adt-mllp") == 8
        assert _value(text, "wasla_transform_results_total", channel="adt-mllp", result="transformed") == 7
        assert _value(text, "wasla_transform_results_total", channel="adt-mllp", result="filtered") == 1
        assert _value(text, "wasla_delivered_total", destination="archive-ndjson") == 7
        assert _value(text, "wasla_delivery_latency_seconds_count", destination="archive-ndjson") == 7
        assert _value(text, "wasla_last_received_timestamp_seconds", channel="adt-mllp") >= before
        assert _value(text, "wasla_queue_depth", queue="wasla.transform.0") == 0
        assert 'wasla_queue_depth{queue="wasla.deliver.archive-ndjson.0"}' in text
        assert "wasla_failed_total" not in text.replace("# HELP wasla_failed_total", "").replace(
            "# TYPE wasla_failed_total", "")  # nothing failed: no series at all


def test_a_worker_process_is_not_ready_while_no_rabbitmq_node_answers(tmp_path: Path, rabbitmq_url: str,
                                                                      postgres_url: str) -> None:
    """Readiness per role: a transform+deliver process on RabbitMQ says which roles it runs, and 503
    with the reason while the broker is away (the load balancer and the orchestrator see it), then
    ready again by itself."""
    import subprocess

    from tests.support import start_engine, stop_engine

    project = make_project(tmp_path)
    main = project / "config" / "wasla.yaml"
    main.write_text(main.read_text().replace("url: memory://", f"url: {rabbitmq_url}").replace(
        "url: sqlite:///var/wasla.db", f"url: {postgres_url}"))
    proc = start_engine(project, roles=("transform", "deliver"), name="workers")
    ready = f"http://127.0.0.1:{ops_port(project)}/health/ready"

    def wait_for(status: int) -> dict[str, object]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                r = httpx.get(ready, timeout=5)
                if r.status_code == status:
                    return dict(r.json())
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"readiness never answered {status}")

    try:
        assert wait_for(200) == {"status": "ready", "roles": ["transform", "deliver"]}
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=120)
        try:
            down = wait_for(503)
            assert down["reason"] == "broker: no RabbitMQ node answers" and down["roles"] == ["transform", "deliver"]
        finally:
            subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
        assert wait_for(200)["status"] == "ready"
    finally:
        stop_engine(proc)
