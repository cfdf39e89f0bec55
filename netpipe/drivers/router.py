"""A namespace of netpipe's own that stands in for the node's host side.

Drivers that route or translate (routed, veth-nat) need IP forwarding and, for
NAT, firewall rules. On a shared machine the root namespace's sysctls and
firewall must stay untouched, so these drivers put the host side of the data
path in a router namespace named ``np<token>rt``: forwarding is enabled
there, rules live there, and all of it vanishes with the namespace.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

from pyroute2 import IPRoute

from netpipe.backends import Backend
from netpipe.backends.netns import NETNS_DIR
from netpipe.drivers.base import Plan, link_mtu, netlink_step
from netpipe.errors import ProvisionError
from netpipe.naming import check_own_name

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
# Set before any device exists, so that "default" reaches every device.
ROUTER_SYSCTLS = (
    ("net/ipv4/conf/all/forwarding", "1"),
    # A router that sends a packet back out of the port it came in on would
    # tell the sender to go direct with an ICMP redirect; NAT makes that wrong.
    ("net/ipv4/conf/all/send_redirects", "0"),
    ("net/ipv4/conf/default/send_redirects", "0"),
)


def router_name(plan: Plan) -> str:
    """Return the name of the cell's router namespace."""
    return plan.name("rt")


def plan_router(plan: Plan) -> None:
    """Add the router namespace to the plan, so the cell's record lists it."""
    name = router_name(plan)
    if name not in plan.extra_netns:
        plan.extra_netns.append(name)


def create_router(backend: Backend, plan: Plan) -> IPRoute:
    """Create the router namespace with lo up and IPv4 forwarding on."""
    name = router_name(plan)
    # The runner creates the plan's extra namespaces; a caller that provisions
    # on its own may not have.
    sock = backend.sockets.get(name) or backend.create(name)
    with netlink_step(f"bringing up lo in {name}"):
        sock.link("set", index=sock.link_lookup(ifname="lo")[0], state="up")
    for key, value in ROUTER_SYSCTLS:
        set_sysctl(name, key, value)
    return sock


def set_sysctl(netns: str, key: str, value: str) -> None:
    """Write ``/proc/sys/<key>`` inside namespace ``netns`` (one of netpipe's)."""
    check_own_name(netns)
    path = Path("/proc/sys", key)
    # /proc/sys/net answers for the namespace of the thread that opens it, so
    # this thread enters the router namespace, writes, and returns at once.
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target, netns)
        try:
            path.write_text(value)
        except OSError as exc:
            raise ProvisionError(
                f"cannot set {key} to {value} in namespace {netns!r}: {exc}"
            ) from exc
        finally:
            _setns(home, "the starting namespace")
    finally:
        os.close(target)
        os.close(home)


def check_router_mtu(sock: IPRoute, plan: Plan, names: list[str]) -> None:
    """Fail if a router-side device did not take the cell's MTU.

    The runner checks endpoint and root-namespace devices; these live in the
    router namespace, so the driver checks them itself.
    """
    wrong = [
        f"{name} in {router_name(plan)} has {got}"
        for name in names
        if (got := link_mtu(sock, name)) != plan.mtu
    ]
    if wrong:
        raise ProvisionError(
            f"MTU {plan.mtu} did not take on every device: {'; '.join(wrong[:5])}."
        )


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise ProvisionError(f"cannot enter {what}: {os.strerror(err)}")
