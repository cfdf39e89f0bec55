"""The yardstick: a netpipe plan provisioned and torn down with ``ip -batch``.

From the very :class:`~netpipe.drivers.Plan` netpipe would use (same namespace
and link names, addresses, MTU), this module writes iproute2 batch files and
runs them the fastest faithful way found on this machine:

- one ``ip -batch`` for everything on the host side: ``netns add`` of every
  namespace, the bridge or uplink, and every veth or macvlan created directly
  in its namespace with its MTU, master and (where the kernel allows) ``up``
  set at creation;
- one ``ip -j -n NS -batch FILE`` per namespace for what only a socket in the
  namespace can do (``-n`` is not allowed inside a batch file): bring a veth
  end up (a veth peer cannot be created up: the kernel answers ENOTCONN),
  add the address, and read the link back for the MTU check. ``-j`` matters:
  plain ``link show`` maps the peer's netnsid to a name by opening every file
  under /run/netns, which at 256 namespaces costs more than the rest;
- these run ``jobs`` at a time (default: one per CPU), because each is a
  process start and the kernel work is small;
- host MTUs are read from /sys/class/net, the same check as netpipe's;
- one ``ip -force -batch`` for the teardown, in netpipe's order (namespaces,
  then host links, ignoring links already gone), then a wait until every
  host link has left /sys/class/net.

Writing the batch files is preparation, like netpipe's plan, and is not timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import SYS_NET, BenchmarkError, run

from netpipe.drivers.base import Plan
from netpipe.drivers.veth_bridge import host_end

# The link-gone wait polls this often; netpipe's own loop sleeps 20 ms.
POLL_S = 0.002
WAIT_LIMIT_S = 15.0


@dataclass
class BatchFiles:
    """The batch files of one plan, written before the clock starts."""

    host: Path
    namespaces: dict[str, Path]
    teardown: Path
    host_links: list[str]
    mtu: int
    timings: dict[str, float] = field(default_factory=dict)


# The drivers this yardstick rebuilds with iproute2 alone: the study's three.
YARDSTICK_DRIVERS = ("veth-bridge", "macvlan-bridge", "ipvlan-l3")


def write_batches(plan: Plan, driver: str, folder: Path) -> BatchFiles:
    """Write the host, per-namespace and teardown batch files of ``plan``."""
    mtu = plan.mtu
    host = [f"netns add {ep.netns}" for ep in plan.endpoints]
    inside: dict[str, list[str]] = {}

    if driver == "veth-bridge":
        bridge = plan.name("br")
        host += [f"link add {bridge} mtu {mtu} type bridge", f"link set {bridge} up"]
        for ep in plan.endpoints:
            outer = host_end(plan, ep.role, ep.pair)
            host.append(
                f"link add {outer} mtu {mtu} master {bridge} up type veth "
                f"peer name {ep.ifname} mtu {mtu} netns {ep.netns}"
            )
            inside[ep.netns] = [f"link set dev {ep.ifname} up"]
    elif driver in ("macvlan-bridge", "ipvlan-l3"):
        if plan.parent is not None:
            raise BenchmarkError("the yardstick supports only the veth uplink.")
        up0, up1 = plan.name("u0"), plan.name("u1")
        host += [
            f"link add {up0} mtu {mtu} type veth peer name {up1} mtu {mtu}",
            f"link set {up0} up",
            f"link set {up1} up",
        ]
        kind = "macvlan mode bridge" if driver == "macvlan-bridge" else "ipvlan mode l3"
        for ep in plan.endpoints:
            host.append(
                f"link add link {up0} name {ep.ifname} netns {ep.netns} mtu {mtu} "
                f"up type {kind}"
            )
            inside[ep.netns] = []
    else:
        raise BenchmarkError(f"no ip -batch yardstick for driver {driver!r}.")

    for ep in plan.endpoints:
        inside[ep.netns] += [
            f"address add {ep.address} dev {ep.ifname}",
            f"link show dev {ep.ifname}",
        ]
    teardown = [f"netns del {ep.netns}" for ep in plan.endpoints]
    teardown += [f"link del {name}" for name in plan.host_links]

    folder.mkdir(parents=True, exist_ok=True)
    files = BatchFiles(
        host=_write(folder / "host.batch", host),
        namespaces={
            ns: _write(folder / f"{ns}.batch", lines) for ns, lines in inside.items()
        },
        teardown=_write(folder / "teardown.batch", teardown),
        host_links=list(plan.host_links),
        mtu=mtu,
    )
    return files


def _write(path: Path, lines: Sequence[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def provision_and_teardown(files: BatchFiles, jobs: int) -> float:
    """Run the batches of one plan; return the seconds it took, links gone."""
    timings = files.timings
    t0 = time.perf_counter()

    run(["ip", "-batch", str(files.host)])
    t1 = time.perf_counter()
    timings["host batch"] = t1 - t0

    try:
        outputs = _in_namespaces(files.namespaces, jobs)
        _check_mtu(files, outputs)
    finally:
        t2 = time.perf_counter()
        timings["namespace batches + MTU check"] = t2 - t1
        # -force: go on past links that vanished with their namespace.
        subprocess.run(
            ["ip", "-force", "-batch", str(files.teardown)],
            capture_output=True,
            check=False,
        )
        t3 = time.perf_counter()
        timings["teardown batch"] = t3 - t2
        _wait_gone(files.host_links)
        t4 = time.perf_counter()
        timings["link-gone wait"] = t4 - t3
    return t4 - t0


def _in_namespaces(batches: dict[str, Path], jobs: int) -> dict[str, str]:
    """Run one ``ip -n NS -batch`` per namespace, ``jobs`` at a time."""
    outputs: dict[str, str] = {}
    running: list[tuple[str, subprocess.Popen[str]]] = []
    failed: list[str] = []

    def reap(ns: str, proc: subprocess.Popen[str]) -> None:
        out, err = proc.communicate(timeout=30)
        if proc.returncode != 0:
            failed.append(f"{ns}: {err.strip()}")
        outputs[ns] = out

    try:
        for ns, path in batches.items():
            argv = ["ip", "-j", "-n", ns, "-batch", str(path)]
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            running.append((ns, proc))
            if len(running) >= jobs:
                reap(*running.pop(0))
    finally:
        # Also when interrupted: no ip process outlives the step it belongs to.
        while running:
            reap(*running.pop(0))
    if failed:
        raise BenchmarkError(f"ip -n ... -batch failed in {'; '.join(failed[:3])}")
    return outputs


def _check_mtu(files: BatchFiles, outputs: dict[str, str]) -> None:
    """Fail unless every device, inside and on the host, has the plan's MTU."""
    wrong = []
    for ns, out in outputs.items():
        links = json.loads(out)
        if [link.get("mtu") for link in links] != [files.mtu]:
            wrong.append(f"{ns}: {out.strip()[:80]}")
    for name in files.host_links:
        with open(os.path.join(SYS_NET, name, "mtu")) as f:
            if int(f.read()) != files.mtu:
                wrong.append(name)
    if wrong:
        raise BenchmarkError(f"MTU {files.mtu} did not take on {wrong[:3]}")


def _wait_gone(names: Sequence[str]) -> None:
    """Wait until none of ``names`` is a link of this namespace any more."""
    deadline = time.monotonic() + WAIT_LIMIT_S
    pending = list(names)
    while pending:
        pending = [n for n in pending if os.path.exists(os.path.join(SYS_NET, n))]
        if pending and time.monotonic() > deadline:
            raise BenchmarkError(f"links still present after teardown: {pending[:5]}")
        if pending:
            time.sleep(POLL_S)
