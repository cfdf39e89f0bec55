"""What netpipe does on a node when the controller asks over SSH.

``netpipe node info`` says what the node is and can run. ``netpipe node
serve`` and ``netpipe node clients`` build one half of a switched cell on
this node (its endpoints and its part of the data path, see
:mod:`netpipe.halves`), say ``ready``, then run the iperf3 servers or, on the
controller's ``go``, the clients; they tear down in every outcome and answer
with everything measured. Requests arrive as one JSON line on stdin, answers
leave as JSON lines on stdout; logs go to stderr. EOF on stdin before the
work is done (the controller gave up or died) stops the half and tears down.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import platform
import select
import socket
import sys
import time
from typing import Any

from pyroute2 import IPRoute

import netpipe
from netpipe import halves, interrupt, provenance, records
from netpipe.backends.netns import Gate, NetnsBackend, Process, proc_start_time
from netpipe.doctor import driver_verdicts
from netpipe.errors import MeasurementError, NetpipeError
from netpipe.iperf.command import (
    IperfOptions,
    client_command,
    iperf_version,
    resolve_binary,
    server_command,
)
from netpipe.iperf.session import _wait_listening
from netpipe.lock import testbed_lock

log = logging.getLogger(__name__)


def serve_request(op: str) -> int:
    """Read one request on stdin, do ``op``, print the answer; return the exit code."""
    line = sys.stdin.buffer.readline()
    try:
        request = json.loads(line)
        answer = info(request) if op == "info" else run_half(op, request)
    except NetpipeError as exc:
        answer = {"event": "done", "error": f"on {socket.gethostname()}: {exc}"}
    except ValueError as exc:
        answer = {"event": "done", "error": f"the request is not JSON: {exc}"}
    emit(answer)
    return 0


def emit(answer: dict[str, Any]) -> None:
    """Print one JSON answer line; a controller that went away is no error."""
    try:
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        log.warning("the controller went away before reading the answer")


def info(request: dict[str, Any]) -> dict[str, Any]:
    """What this node is and can run, for ``netpipe nodes check``."""
    answer: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "user": getpass.getuser(),
        "is_root": os.geteuid() == 0,
        "netpipe_version": netpipe.__version__,
        "python": platform.python_version(),
        "iperf3_version": None,
        "iperf3_error": None,
    }
    try:
        binary = resolve_binary(request["iperf3"])
        answer["iperf3_path"] = binary
        answer["iperf3_version"] = iperf_version(binary)
    except NetpipeError as exc:
        answer["iperf3_error"] = (
            f"iperf3 {request['iperf3']!r} is not usable there: {exc} (inventory key "
            "'iperf3', or iperf.binary)"
        )
    with IPRoute() as host:
        names = sorted(link.get("ifname") for link in host.link("dump"))
    answer["interfaces"] = names
    answer["data_interface_found"] = request["data_interface"] in names
    if answer["is_root"] and answer["data_interface_found"]:
        verdicts = driver_verdicts(request["data_interface"], topology="switched")
        answer["drivers"] = {
            name: halves.unsupported_reason(name) or reason
            for name, reason in verdicts.items()
        }
    return answer


def run_half(op: str, request: dict[str, Any]) -> dict[str, Any]:
    """Build this node's half of a switched cell, run it, tear it down."""
    role = {"serve": "server", "clients": "client"}[op]
    label = request["cell"]
    with interrupt.deferred(), testbed_lock(f"{label} ({role} half)"):
        records.cleanup()
        half = halves.Half.from_request(request, role)
        rec = records.Record(token=f"{half.plan.token}{role[0]}", cell=label)
        rec.netns = [ep.netns for ep in half.plan.endpoints]
        with IPRoute() as host:
            half.plan_links(host)
            rec.links = list(half.plan.host_links)
            rec.restore_mtu = dict(half.restore)
            rec.save()
            answer = _provision_and_run(half, host, rec, role, request)
    answer["provenance"] = provenance.collect(answer.pop("binary"))
    return answer


def _provision_and_run(
    half: halves.Half,
    host: IPRoute,
    rec: records.Record,
    role: str,
    request: dict[str, Any],
) -> dict[str, Any]:
    timings: dict[str, float] = {}
    answer: dict[str, Any] = {"event": "done", "role": role, "timings_s": timings}
    backend = NetnsBackend()
    t = time.monotonic()
    try:
        for ep in half.plan.endpoints:
            backend.create(ep.netns)
        answer["driver"] = half.provision(host, backend)
        timings["provision"] = round(time.monotonic() - t, 4)
        binary = resolve_binary(request["iperf"]["binary"])
        answer["binary"] = binary
        opts = IperfOptions(**{**request["iperf"], "binary": binary})
        log.info(
            "cell %s: %s half provisioned with %s in %.3f s",
            request["cell"],
            role,
            half.driver,
            timings["provision"],
        )
        if role == "server":
            answer["servers"] = _serve(backend, half, opts, rec, request)
        else:
            answer["clients"] = _clients(backend, half, opts, rec, request)
    finally:
        t = time.monotonic()
        left = half.teardown(host, backend)
        if left:
            log.error("links still present after teardown: %s", sorted(left))
        else:
            rec.discard()
        timings["teardown"] = round(time.monotonic() - t, 4)
        log.info(
            "cell %s: %s half torn down in %.3f s",
            request["cell"],
            role,
            timings["teardown"],
        )
    return answer


def _serve(
    backend: NetnsBackend,
    half: halves.Half,
    opts: IperfOptions,
    rec: records.Record,
    request: dict[str, Any],
) -> list[dict[str, Any]]:
    """Start every server, say ready, wait for them (or EOF); return their output."""
    base = request["base_port"]
    procs: list[Process] = []
    try:
        for ep in half.plan.endpoints:
            argv = server_command(opts.binary, str(ep.address.ip), base + ep.pair)
            procs.append(backend.spawn(ep.netns, argv))
        _record(rec, procs)
        _wait_listening(list(procs), [base + ep.pair for ep in half.plan.endpoints])
        emit({"event": "ready", "role": "server"})

        deadline = time.monotonic() + request["limit_s"] + 30
        stdin_open = True
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            interrupt.check()
            if stdin_open and _stdin_closed(0.05):
                # The controller is done with the clients (or gone): a server
                # still waiting will never be reached. Give it a moment.
                stdin_open = False
                deadline = min(deadline, time.monotonic() + 5)
            elif not stdin_open:
                time.sleep(0.05)
        return [
            _output(p, ep, base)
            for p, ep in zip(procs, half.plan.endpoints, strict=True)
        ]
    finally:
        for p in procs:
            p.close()


def _clients(
    backend: NetnsBackend,
    half: halves.Half,
    opts: IperfOptions,
    rec: records.Record,
    request: dict[str, Any],
) -> list[dict[str, Any]]:
    """Say ready, wait for go, release every client at once; return their output."""
    base = request["base_port"]
    emit({"event": "ready", "role": "client"})
    if sys.stdin.buffer.readline().strip() != b"go":
        raise MeasurementError("the controller did not send go; nothing was run.")
    gate = Gate()
    procs: list[Process] = []
    try:
        for ep, server in zip(half.plan.endpoints, request["servers"], strict=True):
            argv = client_command(opts, server, base + ep.pair)
            procs.append(backend.spawn(ep.netns, argv, gate=gate))
        _record(rec, procs)
        gate.open()
        deadline = time.monotonic() + request["limit_s"]
        timed_out = False
        for p in procs:
            if p.wait(timeout=max(deadline - time.monotonic(), 0.0)) is None:
                timed_out = True
        for p in procs:
            p.kill()
        released = gate.collect()
        out = [
            _output(p, ep, base)
            for p, ep in zip(procs, half.plan.endpoints, strict=True)
        ]
        for item, p in zip(out, procs, strict=True):
            item["start"] = released.get(p.pid)
            item["timed_out"] = timed_out
        return out
    finally:
        gate.close()
        for p in procs:
            p.close()


def _stdin_closed(timeout: float) -> bool:
    """Whether stdin reached EOF (anything else read there is ignored)."""
    ready, _, _ = select.select([sys.stdin.buffer], [], [], timeout)
    return bool(ready) and not os.read(sys.stdin.fileno(), 4096)


def _record(rec: records.Record, procs: list[Process]) -> None:
    rec.processes += [(p.pid, proc_start_time(p.pid)) for p in procs]
    rec.save()


def _output(p: Process, ep: Any, base: int) -> dict[str, Any]:
    out, err = p.output()
    return {
        "pair": ep.pair,
        "netns": ep.netns,
        "address": str(ep.address.ip),
        "port": base + ep.pair,
        "command": p.argv,
        "returncode": p.returncode,
        "stdout": out,
        "stderr": err,
    }
