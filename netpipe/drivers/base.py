"""What every driver is given and must provide."""

from __future__ import annotations

import errno
import ipaddress
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netpipe.backends.netns import NetnsBackend
from netpipe.errors import ProvisionError

log = logging.getLogger(__name__)

ENDPOINT_IFNAME = "np0"


@dataclass
class Endpoint:
    """One container stand-in: a namespace holding one data interface."""

    netns: str
    role: str  # "server" or "client"
    pair: int
    address: ipaddress.IPv4Interface
    ifname: str = ENDPOINT_IFNAME


@dataclass
class Plan:
    """Everything one cell will create, named before anything is created."""

    token: str
    mtu: int
    endpoints: list[Endpoint]
    parent: str | None = None
    host_links: list[str] = field(default_factory=list)
    restore_mtu: dict[str, int] = field(default_factory=dict)

    def name(self, suffix: str) -> str:
        """Return a host-side name for this cell: np<token><suffix>."""
        return f"np{self.token}{suffix}"


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

    @abstractmethod
    def plan(self, plan: Plan) -> None:
        """Fill ``plan.host_links`` with every host-side link it will create."""

    @abstractmethod
    def provision(
        self, host: IPRoute, backend: NetnsBackend, plan: Plan
    ) -> dict[str, Any]:
        """Create the data path; return the settings to record in the cell file."""

    def teardown(self, host: IPRoute, plan: Plan) -> None:
        """Remove host-side links and restore what was changed."""
        for ifname in plan.host_links:
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


def configure_endpoint(backend: NetnsBackend, ep: Endpoint, mtu: int) -> None:
    """Inside an endpoint: set the MTU, bring the interface up, add its address."""
    sock = backend.sockets[ep.netns]
    with netlink_step(f"configuring {ep.ifname} in {ep.netns}"):
        idx = sock.link_lookup(ifname=ep.ifname)[0]
        sock.link("set", index=idx, mtu=mtu, state="up")
        sock.addr(
            "add",
            index=idx,
            address=str(ep.address.ip),
            prefixlen=ep.address.network.prefixlen,
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
    """Return the MTU of ``ifname`` as the kernel reports it."""
    links = sock.link("get", ifname=ifname)
    return links[0].get("mtu") if links else None


def probe_kind(backend: NetnsBackend, name: str, kind: str, **attrs: Any) -> str | None:
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
