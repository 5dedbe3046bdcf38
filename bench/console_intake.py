"""The console's effect on intake: MLLP ACK latency at 1 connection while the console is busy.

    python bench/console_intake.py [--seconds 20] [--flooders 8] [--big-mb 20]

Starts `wasla run` on a fresh project (embedded defaults: memory:// + SQLite), journals one big
ADT^A01 (`--big-mb`, Z segments of 50 fields) and waits until it is converted, then measures, in
three conditions, the ACK latency of a sender that sends ADT^A01 messages one at a time on one
connection and waits for each ACK (send to ACK, per message):

- quiet: nothing else runs;
- login flood: `--flooders` processes hammer `/login` with wrong passwords (each takes the form's
  CSRF token once, then posts a fresh user name each time, so no per-name lock stops it);
- login flood from many addresses: the same, each try from another source address of 127.0.0.0/8
  (no per-address lock stops it either: only the bound on password hashing does);
- big message page: one process, signed in before the floods, opens the big message's page once a
  second (an operator refreshing it), then back to back (as fast as the console answers);
- quiet again: how much the machine itself drifted meanwhile;
- the floor: the many-address flood and the page opener again, but against a second console served
  by a process of its own on the same journal, the engine's console idle. What the ACK latency
  still loses there is what the load costs the machine (CPU, the journal's disk), not the engine:
  the least any design of the console could cost on this machine.

Flooders and the page opener are processes of their own, so they do not share the sender's GIL.
Prints a table (condition, ACKs, p50, p95, p99, what the console answered); issue 23, acceptance 3:
p99 unchanged within 20 %.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import re
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import adt, engine, make_project, ops_port, port_of  # noqa: E402

VT, FS, CR = b"\x0b", b"\x1c", b"\x0d"
USER, PASSWORD = "bench.ops", "bench-password-long-enough"
HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its threads included), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / HZ


def big_message(mb: int) -> bytes:
    """An ADT^A01 of about `mb` MB: the corpus ADT plus Z segments of 50 fields of 200 characters."""
    base = adt("BIG-1", "PBIG1").rstrip(b"\r") + b"\r"
    field = b"Z" * 200
    seg_size = 4 + 50 * 201
    count = mb * 1_000_000 // seg_size
    segs = b"".join(b"ZBN|" + b"|".join([str(n).encode(), *[field] * 49]) + b"\r" for n in range(count))
    return base + segs


def send(port: int, payload: bytes, timeout: float = 120.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(VT + payload + FS + CR)
        buf = b""
        while FS + CR not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed before the ACK")
            buf += chunk
        return buf


def measure(port: int, seconds: float, tag: str) -> tuple[list[float], dict[str, int]]:
    """Stop-and-wait on one connection for `seconds`: each message's send-to-ACK time."""
    lat: list[float] = []
    codes: dict[str, int] = {}
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            payload = VT + adt(f"{tag}{i}", f"P{tag}{i % 997}") + FS + CR
            t = time.perf_counter()
            s.sendall(payload)
            buf = b""
            while FS + CR not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("engine closed the connection")
                buf += chunk
            lat.append(time.perf_counter() - t)
            code = buf.split(b"MSA|", 1)[1][:2].decode() if b"MSA|" in buf else "?"
            codes[code] = codes.get(code, 0) + 1
            i += 1
    return lat, codes


def _csrf(text: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', text)
    if not found:
        raise RuntimeError("no CSRF token on the login page")
    return found.group(1)


def flooder(base: str, n: int, spread: bool, stop: mp.Event, counts: mp.Queue) -> None:  # type: ignore[type-arg]
    """POST /login with wrong passwords as fast as the console answers (from a new 127.x.y.z address
    each time with `spread`); the answers' status codes."""
    import ssl

    import httpx

    seen: dict[str, int] = {}
    context = ssl.create_default_context()  # once: loading CA certificates per client costs more than a request
    with httpx.Client(base_url=base, timeout=120) as first:
        token = _csrf(first.get("/login").text)
        cookies = first.cookies
        i = 0
        while not stop.is_set():
            address = f"127.{1 + n}.{i // 250 % 250}.{1 + i % 250}" if spread else "127.0.0.1"
            try:
                client = first if not spread else httpx.Client(
                    base_url=base, timeout=120, cookies=cookies,
                    transport=httpx.HTTPTransport(local_address=address, verify=context))
                with contextlib.nullcontext() if client is first else client:
                    r = client.post("/login", data={"user": f"intruder{n}-{i}", "password": "wrong", "csrf": token})
                key = str(r.status_code)
            except httpx.HTTPError as exc:
                key = exc.__class__.__name__
            seen[key] = seen.get(key, 0) + 1
            i += 1
    counts.put(("login", seen))


def sign_in(base: str) -> dict[str, str]:
    import httpx

    with httpx.Client(base_url=base, timeout=120) as client:
        token = _csrf(client.get("/login").text)
        r = client.post("/login", data={"user": USER, "password": PASSWORD, "csrf": token})
        assert r.status_code == 303, r.status_code
        return dict(client.cookies)


def page_opener(base: str, message_id: str, cookies: dict[str, str], every_s: float,
                stop: mp.Event, counts: mp.Queue) -> None:  # type: ignore[type-arg]
    """Open the big message's page again and again (signed in), one every `every_s` seconds (0: back to
    back); pages opened, their size and time."""
    import httpx

    sizes: list[int] = []
    times: list[float] = []
    with httpx.Client(base_url=base, timeout=300, cookies=cookies) as client:
        while not stop.is_set():
            t = time.perf_counter()
            r = client.get(f"/messages/{message_id}")
            times.append(time.perf_counter() - t)
            sizes.append(len(r.content) if r.status_code == 200 else -r.status_code)
            if every_s:
                stop.wait(max(0.0, every_s - times[-1]))
    counts.put(("page", {"pages": len(sizes), "bytes": max(sizes, default=0),
                         "s_per_page": round(statistics.mean(times), 2) if times else 0}))


def console_elsewhere(project: str, stop: mp.Event, counts: mp.Queue) -> None:  # type: ignore[type-arg]
    """The console of `project` served by this process on its own (the floor's console)."""
    from tests.engine.console.support import served_console

    with served_console(Path(project)) as (base, _, _):
        counts.put(("base", base))
        stop.wait()


def pct(lat: list[float], q: float) -> float:
    lat = sorted(lat)
    return lat[min(len(lat) - 1, int(len(lat) * q))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0, help="measuring time per condition")
    ap.add_argument("--flooders", type=int, default=8)
    ap.add_argument("--big-mb", type=int, default=20)
    args = ap.parse_args()
    from engine.console.users import Users
    from engine.store import Journal

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp))
        chan = project / "config" / "channels" / "adt-mllp.yaml"  # room for the big message
        chan.write_text(chan.read_text().replace("    port:", "    max_message_bytes: 67108864\n    port:", 1))
        Users(project / "config" / "users.yaml").add(USER, "operator", PASSWORD)
        with engine(project) as proc:
            port, base = port_of(project), f"http://127.0.0.1:{ops_port(project)}"
            ack = send(port, big_message(args.big_mb))
            assert b"MSA|AA" in ack, ack[:200]
            journal = Journal(f"sqlite:///{project}/var/wasla.db")
            (big,) = journal.messages.search(control_id="BIG-1")
            deadline = time.monotonic() + 600
            while journal.messages.get(big.id).status not in ("delivered", "failed", "filtered", "parked"):  # type: ignore[union-attr]
                if time.monotonic() > deadline:
                    raise SystemExit("the big message was not converted in 10 minutes")
                time.sleep(0.5)
            journal.close()
            measure(port, 3, "W")  # warm-up
            cookies = sign_in(base)  # before the floods lock this address out
            ctx = mp.get_context("spawn")
            other_stop, other_q = ctx.Event(), ctx.Queue()
            other = ctx.Process(target=console_elsewhere, args=(str(project), other_stop, other_q), daemon=True)
            other.start()
            _, other_base = other_q.get(timeout=120)
            other_cookies = sign_in(other_base)
            conditions = [("quiet", []),
                          (f"login flood ({args.flooders} clients, one address)",
                           [(flooder, (base, n, False)) for n in range(args.flooders)]),
                          (f"login flood ({args.flooders} clients, a new address each try)",
                           [(flooder, (base, n, True)) for n in range(args.flooders)]),
                          (f"{args.big_mb} MB message page, opened once a second (an operator refreshing)",
                           [(page_opener, (base, big.id, cookies, 1.0))]),
                          (f"{args.big_mb} MB message page, opened back to back",
                           [(page_opener, (base, big.id, cookies, 0.0))]),
                          ("quiet again", []),
                          ("floor: login flood (a new address each try), console in another process",
                           [(flooder, (other_base, n, True)) for n in range(args.flooders)]),
                          (f"floor: {args.big_mb} MB message page back to back, console in another process",
                           [(page_opener, (other_base, big.id, other_cookies, 0.0))])]
            for c, (name, workers) in enumerate(conditions):
                stop, counts = ctx.Event(), ctx.Queue()
                procs = [ctx.Process(target=f, args=(*a, stop, counts), daemon=True) for f, a in workers]
                for p in procs:
                    p.start()
                if procs:
                    time.sleep(5)  # the load is on before the measure starts
                cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
                load0 = sum(cpu_seconds(p.pid) for p in procs)
                lat, codes = measure(port, args.seconds, f"C{c}M")
                wall = time.monotonic() - wall0
                engine_cpu = (cpu_seconds(proc.pid) - cpu0) / wall * 100
                load_cpu = (sum(cpu_seconds(p.pid) for p in procs) - load0) / wall * 100
                stop.set()
                seen = [counts.get(timeout=600) for _ in procs]
                for p in procs:
                    p.join(60)
                merged: dict[str, object] = {}
                for _, d in seen:
                    for k, v in d.items():
                        merged[k] = merged.get(k, 0) + v if isinstance(v, int) and k not in ("bytes",) else v  # type: ignore[operator]
                rows.append((name, len(lat), statistics.median(lat) * 1000, pct(lat, 0.95), pct(lat, 0.99),
                             engine_cpu, load_cpu, codes, merged))
            other_stop.set()
            other.join(60)
    print("| condition | ACKs | p50 ms | p95 ms | p99 ms | engine CPU % | load clients CPU % | ACK codes |"
          " console answered |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for name, n, p50, p95, p99, engine_cpu, load_cpu, codes, merged in rows:
        print(f"| {name} | {n:,} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {engine_cpu:.0f} | {load_cpu:.0f} | {codes} |"
              f" {merged or '–'} |")


if __name__ == "__main__":
    main()
