"""An emulated two-node (or N-node) testbed on one machine, and its removal.

``netpipe testbed up`` builds N nodes as network namespaces. Each node has a
data interface plugged into an emulated switch (a Linux bridge in the root
namespace, each port optionally shaped by a tc token bucket) and a management
interface on a separate management bridge, whose root-side address the
controller uses to reach the node's own ``sshd``. That sshd listens only on the
node's management address, accepts only a key generated for the testbed, and
sets ``NETPIPE_STATE_DIR`` for every session, so that the nodes' leftover
records and locks stay apart although they share one ``/run``.

Everything it will make is written to a state file before it is made, so
``netpipe testbed down`` (also run when ``up`` fails half-way) removes exactly
that: processes, namespaces, links (their qdiscs go with them) and files.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from pyroute2 import IPRoute

from netpipe import testbed_sshd
from netpipe.atomic import write_atomic
from netpipe.backends.netns import (
    NetnsBackend,
    remove_netns,
)
from netpipe.drivers.base import delete_link, netlink_step
from netpipe.errors import ConfigError, NodeError
from netpipe.testbed_sshd import SSH_PORT

log = logging.getLogger(__name__)

DEFAULT_DIR = Path("/run/netpipe-testbed")
PREFIX = "nptb"
SWITCH = f"{PREFIX}sw"
MGMT_BRIDGE = f"{PREFIX}mg"
# Inside a node: the data NIC and the management NIC.
DATA_IFNAME = "npdata"
MGMT_IFNAME = "npmgmt"
# Both inside 198.18.0.0/15 but outside 198.18.0.0/16, the endpoints' pool.
MGMT_NET = ipaddress.IPv4Network("198.19.0.0/24")
DATA_NET = ipaddress.IPv4Network("198.19.1.0/24")
CONTROLLER = MGMT_NET.network_address + 1
# The switch carries jumbo frames, as the study's 10 Gbit switch did.
SWITCH_MTU = 9000
MAX_NODES = 50
_RATE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([kmg]?)bit$")


def node_names(count: int) -> list[str]:
    """Return the inventory names of a testbed's nodes: node1, node2, ..."""
    return [f"node{i}" for i in range(1, count + 1)]


def parse_rate(text: str) -> int:
    """Return a tc rate such as '10gbit' in bits per second, or raise."""
    match = _RATE.match(text.strip().lower())
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(
            f"option --rate: {text!r} is not a rate; write a positive number of "
            "bits per second with kbit, mbit or gbit, such as 10gbit or 500mbit."
        )
    scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[match.group(2)]
    bits = int(float(match.group(1)) * scale)
    # tc's rate field holds bytes per second in 32 bits.
    if bits // 8 >= 2**32:
        raise ConfigError(
            f"option --rate: {text!r} is above what a tc token bucket takes "
            "(34 gbit); use a lower rate or none."
        )
    return bits


class State:
    """What the testbed made, saved before each thing is made."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "state.json"
        self.data: dict[str, Any] = {
            "netns": [],
            "links": [],
            "sshd": [],
            "files": [],
            "nodes": [],
        }

    def load(self) -> State:
        """Read the state file."""
        self.data = json.loads(self.path.read_text())
        return self

    def add(self, kind: str, value: Any) -> None:
        """Note one more thing about to be made and save at once."""
        self.data[kind].append(value)
        self.save()

    def save(self) -> None:
        """Write the state file atomically."""
        text = json.dumps(self.data, indent=1)
        write_atomic(self.path, lambda tmp: tmp.write_text(text))


def up(
    count: int = 2,
    *,
    rate: str | None = None,
    inventory: Path | None = None,
    folder: Path = DEFAULT_DIR,
) -> Path:
    """Build the testbed; return the path of the inventory it wrote."""
    if not 2 <= count <= MAX_NODES:
        raise ConfigError(
            f"option --nodes: {count} is not allowed; it must be 2 to {MAX_NODES} "
            "(a switched cell needs a server node and a client node)."
        )
    bits = parse_rate(rate) if rate else None
    sshd = testbed_sshd.sshd_binary()
    keygen = testbed_sshd.keygen_binary()
    if (folder / "state.json").exists():
        raise NodeError(
            f"a testbed is already up (its state is in {folder}); run `netpipe "
            "testbed down` first."
        )
    _refuse_if_taken(count)
    inventory = Path(inventory) if inventory else folder / "inventory.yaml"

    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    state = State(folder)
    state.data["rate_bits"] = bits
    state.save()
    try:
        _build(state, count, bits, sshd, keygen, inventory.absolute())
    except BaseException:
        log.error("testbed up failed; removing what it made")
        down(folder)
        raise
    return inventory


def _refuse_if_taken(count: int) -> None:
    """Refuse, before making anything, if any name the testbed uses exists.

    The names are fixed, so a second testbed (another state folder) would
    otherwise take over, and its removal delete, the first one's objects.
    """
    from netpipe.backends.netns import list_netns

    netns = [f"{PREFIX}{i}" for i in range(1, count + 1)]
    links = [SWITCH, MGMT_BRIDGE] + [
        f"{PREFIX}{i}{end}" for i in range(1, count + 1) for end in ("d", "m")
    ]
    taken = [n for n in netns if n in list_netns()]
    taken += [n for n in links if Path("/sys/class/net", n).exists()]
    if taken:
        raise NodeError(
            f"cannot bring a testbed up: {', '.join(taken)} already exist, so "
            "another testbed is up on this machine (perhaps with another "
            "--state-dir); take that one down first (`netpipe testbed down "
            "--state-dir DIR`). Nothing was made."
        )


def _build(
    state: State, count: int, bits: int | None, sshd: str, keygen: str, inv: Path
) -> None:
    """Make the bridges, the nodes, their keys and sshds, then the inventory."""
    t = time.monotonic()
    backend = NetnsBackend()
    try:
        with IPRoute() as host:
            _make_bridge(state, host, SWITCH, None)
            _make_bridge(state, host, MGMT_BRIDGE, CONTROLLER)
            for i, name in enumerate(node_names(count), start=1):
                _make_node(state, host, backend, i, name, bits)
    finally:
        backend.close()

    client_key = state.folder / "id_ed25519"
    state.add("files", str(client_key))
    testbed_sshd.keygen(keygen, client_key, "netpipe-testbed-client")
    authorized = state.folder / "authorized_keys"
    state.add("files", str(authorized))
    authorized.write_text(Path(f"{client_key}.pub").read_text())
    authorized.chmod(0o600)
    known = state.folder / "known_hosts"
    state.add("files", str(known))
    lines = []
    for node in state.data["nodes"]:
        lines.append(testbed_sshd.start_sshd(state, node, sshd, keygen, authorized))
    known.write_text("".join(lines))
    for node in state.data["nodes"]:
        testbed_sshd.wait_listening(node)

    state.add("files", str(inv))
    _write_inventory(state, inv, client_key, known)
    log.info(
        "testbed up: %d nodes in %.1f s; inventory %s", count, time.monotonic() - t, inv
    )


def _make_bridge(
    state: State, host: IPRoute, name: str, address: ipaddress.IPv4Address | None
) -> None:
    state.add("links", name)
    with netlink_step(f"creating bridge {name}"):
        host.link("add", ifname=name, kind="bridge", mtu=SWITCH_MTU)
        idx = host.link_lookup(ifname=name)[0]
        if address is not None:
            host.addr("add", index=idx, address=str(address), prefixlen=24)
        host.link("set", index=idx, state="up")


def _make_node(
    state: State,
    host: IPRoute,
    backend: NetnsBackend,
    i: int,
    name: str,
    bits: int | None,
) -> None:
    """A namespace with a data NIC on the switch and a management NIC."""
    netns = f"{PREFIX}{i}"
    mgmt = MGMT_NET.network_address + 10 + i
    data = DATA_NET.network_address + 10 + i
    node = {
        "name": name,
        "netns": netns,
        "mgmt_address": str(mgmt),
        "data_address": f"{data}/{DATA_NET.prefixlen}",
        "folder": str(state.folder / name),
    }
    state.add("netns", netns)
    state.add("nodes", node)
    sock = backend.create(netns)
    for suffix, inner, bridge in (
        ("d", DATA_IFNAME, SWITCH),
        ("m", MGMT_IFNAME, MGMT_BRIDGE),
    ):
        outer = f"{PREFIX}{i}{suffix}"
        state.add("links", outer)
        with netlink_step(f"creating veth {outer} for node {name}"):
            host.link(
                "add",
                ifname=outer,
                kind="veth",
                mtu=SWITCH_MTU,
                master=host.link_lookup(ifname=bridge)[0],
                state="up",
                peer={"ifname": inner, "net_ns_fd": netns, "mtu": SWITCH_MTU},
            )
    with netlink_step(f"addressing node {name}"):
        sock.link("set", index=sock.link_lookup(ifname="lo")[0], state="up")
        for inner, address, net in (
            (DATA_IFNAME, data, DATA_NET),
            (MGMT_IFNAME, mgmt, MGMT_NET),
        ):
            idx = sock.link_lookup(ifname=inner)[0]
            sock.addr("add", index=idx, address=str(address), prefixlen=net.prefixlen)
            sock.link("set", index=idx, state="up")
    if bits is not None:
        # The switch port's egress towards the node: the node's receive rate.
        outer = f"{PREFIX}{i}d"
        with netlink_step(f"shaping switch port {outer} to {bits} bit/s"):
            host.tc(
                "add",
                "tbf",
                index=host.link_lookup(ifname=outer)[0],
                rate=bits // 8,
                # A burst of 4 ms at the rate, at least a few jumbo frames.
                burst=max(bits // 8 // 250, 8 * SWITCH_MTU),
                latency="50ms",
            )


def _write_inventory(state: State, path: Path, key: Path, known: Path) -> None:
    """Write the inventory a config includes with ``inventory: PATH``."""
    netpipe_cmd = shutil.which("netpipe", path=str(Path(sys.executable).parent))
    nodes = []
    for node in state.data["nodes"]:
        entry: dict[str, Any] = {
            "name": node["name"],
            "ssh": {
                "host": node["mgmt_address"],
                "port": SSH_PORT,
                "user": "root",
                "key_file": str(key),
                "known_hosts": str(known),
            },
            "data_interface": DATA_IFNAME,
            "data_addresses": [node["data_address"]],
        }
        if netpipe_cmd:
            # The nodes share this machine's files: the same netpipe runs there.
            entry["netpipe"] = netpipe_cmd
        nodes.append(entry)
    header = (
        "# Written by `netpipe testbed up`; removed by `netpipe testbed down`.\n"
        f"# Nodes are namespaces {', '.join(n['netns'] for n in state.data['nodes'])}"
        f" on switch {SWITCH}; management on {MGMT_BRIDGE} ({MGMT_NET}).\n"
    )
    text = header + yaml.safe_dump({"nodes": nodes}, sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: tmp.write_text(text))


def down(folder: Path = DEFAULT_DIR) -> dict[str, list[str]]:
    """Remove everything the testbed's state file lists; return what went."""
    removed: dict[str, list[str]] = {"processes": [], "netns": [], "links": []}
    if not (folder / "state.json").exists():
        log.info("no testbed is up (no state in %s)", folder)
        return removed
    state = State(folder).load()

    for entry in state.data["sshd"]:
        pid = testbed_sshd.read_pid(Path(entry["pid_file"]))
        if pid is not None and testbed_sshd.is_sshd(pid) and testbed_sshd.kill(pid):
            removed["processes"].append(str(pid))
    for netns in state.data["netns"]:
        # Sessions the node's sshd started (and anything they left) live in
        # the node's namespace; they go before the namespace does.
        for pid in testbed_sshd.pids_in_netns(netns):
            if testbed_sshd.kill(pid):
                removed["processes"].append(str(pid))
        if remove_netns(netns):
            removed["netns"].append(netns)
    with IPRoute() as host:
        for name in reversed(state.data["links"]):
            if delete_link(host, name):
                removed["links"].append(name)
    for name in state.data["files"]:
        with contextlib.suppress(FileNotFoundError):
            Path(name).unlink()
    shutil.rmtree(folder, ignore_errors=True)
    log.info("testbed down: removed %s", removed)
    return removed
