"""Fidelity: netpipe's 1-pair TCP figure against iperf3 run by hand.

A = one netpipe cell (veth-bridge, TCP, MTU 1500, 1 pair) through
``netpipe.runner.measure``, exactly as the workflow runs it. B = the same
kind of testbed made with plain ``ip`` commands (two namespaces, a veth pair
each, the host ends on a bridge) and iperf3 started by hand with
``ip netns exec NS iperf3 -s -1 -J`` and ``ip netns exec NS iperf3 -c ...``.
A and B alternate, and both are read with ``netpipe.iperf.reader.parse_text``;
the figure is the received rate. The ratio of the medians should be >= 0.98:
netpipe's machinery must not cost throughput.

Run as root from the repository: ``python3 benchmarks/fidelity.py``.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import (
    BenchmarkError,
    busy_note,
    leftovers,
    machine,
    preflight,
    recorded,
    run,
    run_main,
    setup_logging,
    summary,
    testbed,
    verdict,
    write_json,
)

from netpipe import interrupt, records, runner
from netpipe.config import Config, validate
from netpipe.iperf.reader import parse_text
from netpipe.matrix import Cell
from netpipe.naming import new_token

log = logging.getLogger("fidelity")

TARGET_RATIO = 0.98
MTU = 1500
HAND_PORT = 5201  # iperf3's default: the hand-run gives no -p
SERVER_ADDR = "198.19.0.1"
CLIENT_ADDR = "198.19.0.2"
PREFIX = 24
TCP_LISTEN = "0A"


def main(argv: list[str] | None = None) -> int:
    """Run A and B alternately, print the medians and ratio, write the JSON."""
    args = _parser().parse_args(argv)
    setup_logging(args.verbose)
    preflight(["ip", "iperf3"])
    config = validate(
        {
            "matrix": [
                {
                    "driver": ["veth-bridge"],
                    "protocol": ["tcp"],
                    "mtu": [MTU],
                    "pairs": [1],
                }
            ],
            "iperf": {"duration_s": args.duration, "omit_s": args.omit},
        }
    )
    info = machine()
    t_start = time.monotonic()
    netpipe_runs: list[dict[str, Any]] = []
    hand_runs: list[dict[str, Any]] = []

    with (
        interrupt.deferred(),
        hand_testbed() as bed,
        tempfile.TemporaryDirectory(prefix="np-fidelity-") as folder,
    ):
        for rep in range(1, args.reps + 1):
            netpipe_runs.append(_netpipe_run(config, rep, Path(folder)))
            hand_runs.append(bed.measure(args.duration, args.omit))
            log.info(
                "rep %d: netpipe %.2f Gbit/s, by hand %.2f Gbit/s",
                rep,
                netpipe_runs[-1]["received_bps"] / 1e9,
                hand_runs[-1]["received_bps"] / 1e9,
            )

    a = summary([r["received_bps"] / 1e9 for r in netpipe_runs])
    b = summary([r["received_bps"] / 1e9 for r in hand_runs])
    ratio = round(a["median"] / b["median"], 4)
    # How sure the two series differ at all: with run-to-run spread of tens of
    # percent on a small VM, five runs often cannot tell 0.98 from 1.0.
    from scipy.stats import mannwhitneyu  # here: importing it takes 2 s

    p_value = mannwhitneyu(a["runs"], b["runs"], alternative="two-sided").pvalue
    result = {
        "benchmark": "fidelity",
        "machine": info,
        "settings": {
            "driver": "veth-bridge",
            "protocol": "tcp",
            "mtu": MTU,
            "pairs": 1,
            "duration_s": args.duration,
            "omit_s": args.omit,
            "repetitions": args.reps,
            "order": "netpipe, hand, netpipe, hand, ...",
        },
        "netpipe_gbps": a,
        "hand_gbps": b,
        "ratio": ratio,
        "mann_whitney_p": round(float(p_value), 4),
        "target": {"ratio_at_least": TARGET_RATIO, "pass": ratio >= TARGET_RATIO},
        "netpipe_runs": netpipe_runs,
        "hand_runs": hand_runs,
        "wall_s": round(time.monotonic() - t_start, 1),
    }
    _print(result)
    result["note"] = busy_note()
    if result["note"]:
        print(f"\nnote: {result['note']}")
    path = write_json(result, args.output)
    print(f"\nwritten: {path}  ({result['wall_s']} s)")
    return 1 if args.check and ratio < TARGET_RATIO else 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--output",
        default="results/benchmarks/fidelity.json",
        help="where to write the JSON (default: %(default)s)",
    )
    p.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    p.add_argument("--duration", type=int, default=3, help="iperf3 -t (default 3)")
    p.add_argument("--omit", type=int, default=1, help="iperf3 -O (default 1)")
    p.add_argument("--check", action="store_true", help="exit 1 if the target fails")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _netpipe_run(config: Config, rep: int, folder: Path) -> dict[str, Any]:
    """Measure one cell with netpipe's runner; return its parsed figures."""
    cell = Cell("local", "veth-bridge", "tcp", MTU, 1, rep)
    result = runner.measure(cell, config, folder / f"rep{rep}.json")
    if result["status"] != "ok":
        raise BenchmarkError(f"netpipe cell {cell.label()}: {result['reason']}")
    pair = result["pairs"][0]
    parsed = parse_text(pair["client_stdout"], server_text=pair["server_stdout"])
    return _figures(parsed, pair["client_command"])


def _figures(parsed: Any, command: list[str]) -> dict[str, Any]:
    if parsed.status != "ok" or parsed.received_bps is None:
        raise BenchmarkError(f"iperf3 gave no received rate: {parsed.error}")
    return {
        "received_bps": parsed.received_bps,
        "sent_bps": parsed.sent_bps,
        "retransmits": parsed.retransmits,
        "flags": list(parsed.flags),
        "client_command": command,
    }


@contextmanager
def hand_testbed() -> Iterator[HandTestbed]:
    """Make the hand-run testbed; remove it however the block ends."""
    bed = HandTestbed()
    with recorded(bed.rec):
        try:
            with testbed("fidelity set-up"):
                bed.create()
            yield bed
        finally:
            with testbed("fidelity teardown"):
                bed.remove()


class HandTestbed:
    """Two namespaces on a bridge, made with plain ``ip`` commands."""

    def __init__(self) -> None:
        token = new_token()
        self.server, self.client = f"np{token}s", f"np{token}c"
        self.bridge = f"np{token}br"
        self.outer = {self.server: f"np{token}vs", self.client: f"np{token}vc"}
        self.rec = records.Record(
            token=token,
            cell="benchmark fidelity by hand",
            netns=[self.server, self.client],
            links=[self.bridge, *self.outer.values()],
        )

    def create(self) -> None:
        """Create both namespaces, the bridge and the veth pairs, as a user would."""
        m = str(MTU)
        run(["ip", "link", "add", self.bridge, "mtu", m, "type", "bridge"])
        run(["ip", "link", "set", self.bridge, "up"])
        for ns, addr in ((self.server, SERVER_ADDR), (self.client, CLIENT_ADDR)):
            outer = self.outer[ns]
            run(["ip", "netns", "add", ns])
            peer = ["peer", "name", "np0", "mtu", m, "netns", ns]
            run(["ip", "link", "add", outer, "mtu", m, "type", "veth", *peer])
            run(["ip", "link", "set", outer, "master", self.bridge, "up"])
            run(["ip", "-n", ns, "link", "set", "np0", "up"])
            run(["ip", "-n", ns, "addr", "add", f"{addr}/{PREFIX}", "dev", "np0"])

    def remove(self) -> None:
        """Delete what :meth:`create` made, as far as it got; wait for the links."""
        for ns in self.outer:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        for link in self.rec.links:
            subprocess.run(
                ["ip", "link", "del", link], capture_output=True, check=False
            )
        deadline = time.monotonic() + 15
        while leftovers(self.rec) and time.monotonic() < deadline:
            time.sleep(0.02)

    def measure(self, duration: int, omit: int) -> dict[str, Any]:
        """Run one iperf3 test by hand; return its parsed figures."""
        server_argv = ["ip", "netns", "exec", self.server, "iperf3", "-s", "-1", "-J"]
        client_argv = ["ip", "netns", "exec", self.client, "iperf3", "-c"]
        client_argv += [SERVER_ADDR, "-J", "-t", str(duration), "-O", str(omit)]
        with testbed("fidelity by hand"):
            server = subprocess.Popen(
                server_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            try:
                _wait_listening(server, HAND_PORT)
                client = subprocess.run(
                    client_argv,
                    capture_output=True,
                    text=True,
                    timeout=duration + omit + 20,
                    check=False,
                )
                server_out, _ = server.communicate(timeout=10)
            finally:
                if server.poll() is None:
                    server.kill()  # our own child, by its PID
                    server.communicate()
        parsed = parse_text(client.stdout, server_text=server_out or None)
        return _figures(parsed, client_argv)


def _wait_listening(server: subprocess.Popen[str], port: int) -> None:
    """Wait until the hand-started server listens, reading its own /proc."""
    # `ip netns exec` execs iperf3 in the same process once it has entered the
    # namespace; before that /proc/PID/net would show the host's sockets.
    want = f":{port:04X}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if server.poll() is not None:
            _, err = server.communicate()
            raise BenchmarkError(f"the hand-run iperf3 server exited: {err.strip()}")
        if _comm(server.pid) == "iperf3" and _listens(server.pid, want):
            return
        time.sleep(0.005)
    raise BenchmarkError(f"the hand-run iperf3 server did not listen on {port}.")


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _listens(pid: int, want: str) -> bool:
    """Whether a TCP socket listens on port ``want`` in the namespace of ``pid``."""
    # Without -B, iperf3 listens on :: (IPv4 too), which /proc shows in tcp6.
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                rows = [line.split() for line in f.readlines()[1:]]
        except OSError:
            return False
        if any(r[1].endswith(want) and r[3] == TCP_LISTEN for r in rows):
            return True
    return False


def _print(result: dict[str, Any]) -> None:
    a, b = result["netpipe_gbps"], result["hand_gbps"]
    reps = result["settings"]["repetitions"]
    print(f"\nfidelity: 1-pair TCP, veth-bridge, MTU {MTU}, median of {reps}")
    print(f"  netpipe    {a['median']:7.2f} Gbit/s  ({a['min']:.2f}-{a['max']:.2f})")
    print(f"  by hand    {b['median']:7.2f} Gbit/s  ({b['min']:.2f}-{b['max']:.2f})")
    print(f"  ratio      {result['ratio']:7.3f}")
    print(f"  Mann-Whitney p = {result['mann_whitney_p']} (netpipe vs by hand differ?)")
    ok = result["target"]["pass"]
    print("\ntargets")
    print(f"  {verdict(ok)}  netpipe/by-hand >= {TARGET_RATIO}: {result['ratio']}")


if __name__ == "__main__":
    run_main(main)
