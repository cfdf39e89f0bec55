"""ipvlan-l3: an ipvlan sub-device per endpoint, in L3 mode.

All sub-devices share the parent's MAC address; the parent steers packets to
them by IP address and they are routed, so broadcast and multicast do not
work. Not every kernel has ipvlan (CONFIG_IPVLAN), so the driver probes for it
in a throwaway namespace before a cell is provisioned. The L2 and L3S modes
are subclasses that differ only in the mode they ask for.
"""

from __future__ import annotations

from typing import Any

from pyroute2 import IPRoute

from netpipe.backends.netns import NetnsBackend
from netpipe.drivers import lower
from netpipe.drivers.base import (
    ENDPOINT_IFINDEX,
    Driver,
    Plan,
    configure_endpoint,
    netlink_step,
    probe_kind,
)

IPVLAN_MODES = {"l2": 0, "l3": 1, "l3s": 2}


class IpvlanL3(Driver):
    """ipvlan sub-devices in L3 mode on one parent."""

    name = "ipvlan-l3"
    summary = "ipvlan sub-device per endpoint, L3 mode"
    mode = "l3"

    def unavailable_reason(
        self, host: IPRoute, parent: str | None, scratch: str
    ) -> str | None:
        """Probe for ipvlan support, then check the parent."""
        backend = NetnsBackend()
        try:
            error = probe_kind(
                backend, scratch, "ipvlan", ipvlan_mode=IPVLAN_MODES[self.mode]
            )
        finally:
            backend.close()
        if error is not None:
            return (
                f"this kernel cannot create ipvlan devices ({error}); it was "
                "built without ipvlan support (CONFIG_IPVLAN)."
            )
        return lower.parent_reason(host, parent)

    def plan(self, plan: Plan) -> None:
        """Sub-devices are created inside the endpoints; only the uplink is ours."""
        lower.plan_uplink(plan)

    def provision(
        self, host: IPRoute, backend: NetnsBackend, plan: Plan
    ) -> dict[str, Any]:
        """Create one ipvlan per endpoint directly inside its namespace."""
        parent_idx, parent = lower.prepare_parent(host, plan)
        for ep in plan.endpoints:
            with netlink_step(f"creating ipvlan for {ep.netns} on {parent}"):
                host.link(
                    "add",
                    ifname=ep.ifname,
                    index=ENDPOINT_IFINDEX,
                    kind="ipvlan",
                    link=parent_idx,
                    ipvlan_mode=IPVLAN_MODES[self.mode],
                    mtu=plan.mtu,
                    net_ns_fd=ep.netns,
                )
            configure_endpoint(backend, ep, plan.mtu)
        return {
            "name": self.name,
            "mode": self.mode,
            "parent": parent,
            "parent_is_uplink": plan.parent is None,
        }


class IpvlanL2(IpvlanL3):
    """ipvlan sub-devices in L2 mode: switched by MAC, broadcast works."""

    name = "ipvlan-l2"
    summary = "ipvlan sub-device per endpoint, L2 mode"
    mode = "l2"


class IpvlanL3s(IpvlanL3):
    """ipvlan sub-devices in L3S mode: L3 with the netfilter hooks of the host."""

    name = "ipvlan-l3s"
    summary = "ipvlan sub-device per endpoint, L3S mode"
    mode = "l3s"
