"""What every driver is given and must provide."""

from __future__ import annotations

import errno
import ipaddress
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netpipe import interrupt
from netpipe.backends import Backend
from netpipe.errors import ProvisionError
from netpipe.naming import check_own_name

log = logging.getLogger(__name__)

ENDPOINT_IFNAME = "np0"
ENDPOINT_IFINDEX = 2
SYSFS_NET = "/sys/class/net"


@dataclass
class Endpoint:
    """One container stand-in: a namespace holding one data interface."""

    netns: str
    role: str  # "server" or "client"
    pair: int
    address: ipaddress.IPv4Interface
    ifname: str = ENDPOINT_IFNAME
    # Set by drivers whose traffic does not go to the endpoint's own address:
    # a server listens on ``listen_on``, a client dials ``connect_to``
    # (veth-nat's published address, the host driver's loopback).
    listen_on: str | None = None
    connect_to: str | None = None


@dataclass
class Plan:
    """Everything one cell will create, named before anything is created."""

    token: str
    mtu: int
    endpoints: list[Endpoint]
    parent: str | None = None
    host_links: list[str] = field(default_factory=list)
    # Host links that vanish with their endpoint's namespace (veth ends):
    # teardown waits for them rather than deleting each one, which costs an
    # RCU grace period per link.
    follow_endpoints: set[str] = field(default_factory=set)
    restore_mtu: dict[str, int] = field(default_factory=dict)
    # iperf3 runs in the namespace netpipe started in, not in the endpoints.
    host_network: bool = False
    # The first iperf3 port (iperf.base_port); pair i uses base_port + i.
    base_port: int = 5201
    # Namespaces a driver needs besides the endpoints' (vxlan's node
    # namespaces): the runner records, creates and removes them with those.
    extra_netns: list[str] = field(default_factory=list)
    # The MTU of the endpoints' data interfaces, below the cell's when a
    # driver encapsulates (vxlan); 0 means the cell's MTU.
    endpoint_mtu: int = 0

    def __post_init__(self) -> None:
        if not self.endpoint_mtu:
            self.endpoint_mtu = self.mtu

    def name(self, suffix: str) -> str:
        """Return a host-side name for this cell: np<token><suffix>."""
        # Every name a driver makes passes here on its way to the kernel.
        return check_own_name(f"np{self.token}{suffix}")


class Driver(ABC):
    """A way of connecting endpoints to the node's network."""

    name: ClassVar[str]
    summary: ClassVar[str]

    def unavailable_reason(
        self, host: IPRoute, parent: str | None, scratch: str
    ) -> str | None:
        """Return why this machine cannot run the driver, or None if it can.

        ``scratch`` names a namespace the check may create for a probe (it is
        in the cell's leftover record) and must remove before returning.
        """
        return None

    def inapplicable_reason(self, topology: str, pairs: int) -> str | None:
        """Return why this driver cannot carry a pair in ``topology``, or None.

        Decided from the cell alone, before any probe or provisioning: for
        example, macvlan's private mode cannot join two endpoints on one node.
        """
        return None

    @abstractmethod
    def plan(self, plan: Plan) -> None:
        """Fill ``plan.host_links`` with every host-side link it will create."""

    @abstractmethod
    def provision(self, host: IPRoute, backend: Backend, plan: Plan) -> dict[str, Any]:
        """Create the data path; return the settings to record in the cell file."""

    def teardown(self, host: IPRoute, plan: Plan) -> None:
        """Remove host-side links and restore what was changed."""
        for ifname in plan.host_links:
            if ifname not in plan.follow_endpoints:
                delete_link(host, ifname)
        for ifname, mtu in plan.restore_mtu.items():
            idx = host.link_lookup(ifname=ifname)
            if idx:
                host.link("set", index=idx[0], mtu=mtu)


@contextmanager
def netlink_step(what: str) -> Iterator[None]:
    """Turn a kernel refusal into a ProvisionError that keeps its errno."""
    try:
        yield
    except NetlinkError as exc:
        raise ProvisionError(
            f"{what} failed: {exc.args[-1]} (errno {exc.code})."
        ) from exc


def configure_endpoint(backend: Backend, ep: Endpoint, mtu: int) -> None:
    """Inside an endpoint: set the MTU, bring the interface up, add its address."""
    interrupt.check()
    sock = backend.sockets[ep.netns]
    with netlink_step(f"configuring {ep.ifname} in {ep.netns}"):
        # In a fresh namespace the data interface is the first device after
        # lo, so it has ENDPOINT_IFINDEX; look it up only if it does not.
        idx = ENDPOINT_IFINDEX
        try:
            sock.link("set", index=idx, mtu=mtu, state="up")
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise
            idx = sock.link_lookup(ifname=ep.ifname)[0]
            sock.link("set", index=idx, mtu=mtu, state="up")
        sock.addr(
            "add",
            index=idx,
            address=str(ep.address.ip),
            prefixlen=ep.address.network.prefixlen,
        )


def add_endpoint_veth(
    sock: IPRoute, outer: str, ep: Endpoint, mtu: int, **attrs: Any
) -> None:
    """Create a veth whose end ``outer`` stays with ``sock`` and whose peer is
    the endpoint's data interface, inside its namespace; ``attrs`` such as
    ``master`` apply to the outer end."""
    with netlink_step(f"creating veth {outer} for {ep.netns}"):
        sock.link(
            "add",
            ifname=outer,
            kind="veth",
            mtu=mtu,
            state="up",
            peer={"ifname": ep.ifname, "net_ns_fd": ep.netns, "mtu": mtu},
            **attrs,
        )


def delete_link(host: IPRoute, ifname: str) -> bool:
    """Delete a link by name if it exists; return whether it did."""
    try:
        host.link("del", ifname=ifname)
    except NetlinkError as exc:
        if exc.code in (errno.ENODEV, errno.ENOENT):
            return False
        raise ProvisionError(f"cannot delete link {ifname!r}: {exc}") from exc
    return True


def link_mtu(sock: IPRoute, ifname: str) -> int | None:
    """Return the MTU of ``ifname`` as the kernel reports it, None if absent."""
    try:
        links = sock.link("get", ifname=ifname)
    except NetlinkError as exc:
        if exc.code in (errno.ENODEV, errno.ENOENT):
            return None
        raise
    return links[0].get("mtu") if links else None


def host_link_mtus(host: IPRoute, names: list[str]) -> dict[str, int | None]:
    """Return the MTU of each named link of the host, None for a missing one.

    sysfs answers in microseconds where pyroute2 needs about a millisecond
    per link, which matters at 256 endpoints; it is used only if it shows
    this process's namespace (the first name found, or all of them missing
    in netlink too), else netlink answers for every link.
    """
    sysfs: dict[str, int | None] = {}
    for name in names:
        try:
            sysfs[name] = int(Path(SYSFS_NET, name, "mtu").read_text())
        except (OSError, ValueError):
            sysfs[name] = None
    probe = next((n for n, mtu in sysfs.items() if mtu is not None), None)
    if probe is not None and link_mtu(host, probe) == sysfs[probe]:
        return sysfs
    found = {link.get("ifname"): link.get("mtu") for link in host.link("dump")}
    return {name: found.get(name) for name in names}


def probe_kind(backend: Backend, name: str, kind: str, **attrs: Any) -> str | None:
    """Try to create a ``kind`` link in a throwaway namespace; return the error."""
    sock = backend.create(name)
    try:
        sock.link("add", ifname="npprobe0", kind="veth", peer={"ifname": "npprobe1"})
        lower = sock.link_lookup(ifname="npprobe0")[0]
        sock.link("add", ifname="npprobe2", kind=kind, link=lower, **attrs)
    except NetlinkError as exc:
        return f"{exc.args[-1]} (errno {exc.code})"
    finally:
        backend.remove(name)
    return None
