"""Running the iperf3 pairs of one cell, all clients released together.

One one-off server per pair (an iperf3 server runs one test at a time) is
started in its server endpoint; once every server listens, the clients are
started and held at a gate, then released at once. Each client's release
time is recorded so the report can say how far apart the streams started.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netpipe import interrupt
from netpipe.backends import Backend, Proc
from netpipe.drivers.base import Plan
from netpipe.errors import MeasurementError
from netpipe.iperf.command import IperfOptions, client_command, server_command
from netpipe.iperf.failures import ask_to_stop, judge_pairs

log = logging.getLogger(__name__)

TCP_LISTEN = "0A"


@dataclass
class Outcome:
    """What the pairs of a cell produced."""

    status: str
    reason: str | None
    error_class: str | None
    pairs: list[dict[str, Any]]
    start_spread: float


def run_pairs(
    backend: Backend,
    plan: Plan,
    opts: IperfOptions,
    *,
    base_port: int,
    limit_s: float,
    on_spawn: Callable[[list[Proc]], None],
) -> Outcome:
    """Run every pair of ``plan``; return their raw output and the cell status."""
    servers = [ep for ep in plan.endpoints if ep.role == "server"]
    clients = [ep for ep in plan.endpoints if ep.role == "client"]
    started: list[Proc] = []
    try:
        srv = []
        for ep in servers:
            address = ep.listen_on or str(ep.address.ip)
            argv = server_command(opts.binary, address, base_port + ep.pair)
            srv.append(backend.spawn(ep.netns, argv, host_network=plan.host_network))
        started += srv
        on_spawn(srv)
        _wait_listening(srv, [base_port + ep.pair for ep in servers])

        gate = backend.gate()
        try:
            cli = []
            for ep, server in zip(clients, servers, strict=True):
                target = ep.connect_to or str(server.address.ip)
                argv = client_command(opts, target, base_port + ep.pair)
                cli.append(
                    backend.spawn(
                        ep.netns, argv, gate=gate, host_network=plan.host_network
                    )
                )
            started += cli
            on_spawn(cli)
            gate.open()
            timed_out = _wait_all(cli, limit_s)
            released = gate.collect()
        finally:
            gate.close()

        if timed_out:
            # Asked first, hung clients print what they measured (failures).
            ask_to_stop(cli, srv)
            for p in started:
                p.kill()
        for s in srv:
            # A one-off server exits right after its test; give it a moment.
            if s.wait(timeout=5) is None:
                s.kill()
        pairs = [
            _pair_record(i, s, c, servers[i], clients[i], base_port, released)
            for i, (s, c) in enumerate(zip(srv, cli, strict=True))
        ]
    finally:
        for p in started:
            p.close()

    return _judge(pairs, timed_out, limit_s, released)


def _wait_listening(servers: list[Proc], ports: list[int]) -> None:
    """Wait until every server listens on its port, or fail with its words."""
    deadline = time.monotonic() + 10
    pending = dict(zip(ports, servers, strict=True))
    while pending:
        for port, proc in list(pending.items()):
            if proc.poll() is not None:
                out, err = proc.output()
                raise MeasurementError(
                    f"the iperf3 server on port {port} in {proc.netns} exited with "
                    f"code {proc.returncode} before listening: "
                    f"{(err or out).strip()[:300]}"
                )
            if _listening(proc.ns_pid, port):
                del pending[port]
        if pending and time.monotonic() > deadline:
            raise MeasurementError(
                f"{len(pending)} iperf3 servers did not listen within 10 s "
                f"(ports {sorted(pending)[:5]})."
            )
        if pending:
            interrupt.check()
            time.sleep(0.005)


def _listening(pid: int, port: int) -> bool:
    """Whether a TCP socket listens on ``port`` in the namespace of ``pid``."""
    # /proc/PID/net/tcp lists the sockets of that process's namespace, so the
    # check needs no connection, which a one-off server would count as its test.
    want = f":{port:04X}"
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[1].endswith(want) and fields[3] == TCP_LISTEN:
                        return True
        except OSError:
            return False
    return False


def _wait_all(procs: list[Proc], limit_s: float) -> bool:
    """Wait for every process; return True if the time limit ran out."""
    deadline = time.monotonic() + limit_s
    for p in procs:
        if p.wait(timeout=max(deadline - time.monotonic(), 0.0)) is None:
            return True
    return False


def _pair_record(
    i: int,
    server: Proc,
    client: Proc,
    server_ep: Any,
    client_ep: Any,
    base_port: int,
    released: dict[int, float],
) -> dict[str, Any]:
    c_out, c_err = client.output()
    s_out, s_err = server.output()
    return {
        "index": i,
        "server_netns": server_ep.netns,
        "client_netns": client_ep.netns,
        "server_address": str(server_ep.address.ip),
        "client_address": str(client_ep.address.ip),
        "port": base_port + i,
        "server_command": server.argv,
        "client_command": client.argv,
        "client_start": released.get(client.pid),
        "client_returncode": client.returncode,
        "client_stdout": c_out,
        "client_stderr": c_err,
        "server_returncode": server.returncode,
        "server_stdout": s_out or None,
        "server_stderr": s_err,
    }


def _judge(
    pairs: list[dict[str, Any]],
    timed_out: bool,
    limit_s: float,
    released: dict[int, float],
) -> Outcome:
    """Decide the cell's status from its pairs."""
    starts = [t for t in released.values()]
    spread = max(starts) - min(starts) if starts else 0.0
    failure = judge_pairs(pairs, timed_out=timed_out, limit_s=limit_s)
    if failure is not None:
        return Outcome("failed", failure.message, failure.error_class, pairs, spread)
    return Outcome("ok", None, None, pairs, spread)
