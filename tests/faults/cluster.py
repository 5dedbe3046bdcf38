"""A 3-node RabbitMQ cluster on this machine, for the fault-injection tests.

Each node is a real `rabbitmq-server` with its own node name, AMQP and distribution ports, data and
log folders and config file, started as the rabbitmq user (the Debian wrapper drops the environment
when it switches user, so the server script is called directly) and joined to the first with
`rabbitmqctl join_cluster`. The machine's own node (rabbit@localhost, 5672) is not touched.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
BASE = Path("/tmp/wasla-faults-rabbitmq")


@dataclass(frozen=True)
class Node:
    index: int

    @property
    def name(self) -> str:
        return f"wasla-f{self.index}@localhost"

    @property
    def port(self) -> int:
        return 5690 + self.index

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def folder(self) -> Path:
        return BASE / f"n{self.index}"


def ctl(node: Node, *args: str, timeout: float = 120, check: bool = True) -> str:
    done = subprocess.run(["rabbitmqctl", "-n", node.name, *args], capture_output=True, text=True, timeout=timeout,
                          check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl -n {node.name} {' '.join(args)}: {done.stderr.strip()[-500:]}")
    return done.stdout


def start(node: Node) -> None:
    """Start the node (its data kept if it ran before) and wait until it serves."""
    node.folder.mkdir(parents=True, exist_ok=True)
    (node.folder / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{node.port}\n"
                                               "loopback_users = none\n")
    (node.folder / "enabled_plugins").write_text("[].\n")
    shutil.chown(node.folder, "rabbitmq", "rabbitmq")
    for f in node.folder.iterdir():
        shutil.chown(f, "rabbitmq", "rabbitmq")
    env = {"RABBITMQ_NODENAME": node.name, "RABBITMQ_NODE_PORT": str(node.port),
           "RABBITMQ_DIST_PORT": str(25690 + node.index), "RABBITMQ_MNESIA_BASE": str(node.folder / "mnesia"),
           "RABBITMQ_LOG_BASE": str(node.folder / "log"), "RABBITMQ_PID_FILE": str(node.folder / "pid"),
           "RABBITMQ_ENABLED_PLUGINS_FILE": str(node.folder / "enabled_plugins"),
           "RABBITMQ_CONFIG_FILE": str(node.folder / "rabbitmq.conf")}
    subprocess.run(["runuser", "-u", "rabbitmq", "--", "env", *(f"{k}={v}" for k, v in env.items()), SERVER,
                    "-detached"], check=True, capture_output=True, timeout=60)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = subprocess.run(["rabbitmqctl", "-n", node.name, "await_startup", "--timeout", "60"],
                              capture_output=True, timeout=90, check=False)
        if done.returncode == 0:
            return
        time.sleep(1)
    raise RuntimeError(f"{node.name} did not start: see {node.folder / 'log'}")


def stop(node: Node) -> None:
    """Stop the whole node (the Erlang VM too), as a machine going down would."""
    ctl(node, "stop", check=False)


def join(node: Node, seed: Node) -> None:
    ctl(node, "stop_app")
    ctl(node, "reset")
    ctl(node, "join_cluster", seed.name)
    ctl(node, "start_app")


def members(node: Node) -> list[str]:
    out = ctl(node, "cluster_status", "--formatter", "json")
    import json

    return sorted(json.loads(out)["running_nodes"])


def delete_wasla_queues(node: Node) -> None:
    for name in ctl(node, "-q", "list_queues", "name").split():
        if name.startswith("wasla."):
            ctl(node, "delete_queue", name, check=False)


def cluster_up() -> list[Node]:
    """Three fresh nodes in one cluster (any left over from an interrupted run are stopped first)."""
    nodes = [Node(i) for i in (1, 2, 3)]
    cluster_down(nodes)
    for node in nodes:
        start(node)
    for node in nodes[1:]:
        join(node, nodes[0])
    running = members(nodes[0])
    assert running == sorted(n.name for n in nodes), running
    return nodes


def cluster_down(nodes: list[Node]) -> None:
    for node in nodes:
        stop(node)
    shutil.rmtree(BASE, ignore_errors=True)
