"""veth-bridge: a veth pair per endpoint, the host ends on a Linux bridge.

Docker's default data path without its port mapping: endpoint traffic crosses
two veth pairs and the bridge, with no NAT.
"""

from __future__ import annotations

from typing import Any

from pyroute2 import IPRoute

from netpipe.backends import Backend
from netpipe.drivers.base import (
    Driver,
    Plan,
    add_endpoint_veth,
    configure_endpoint,
    netlink_step,
)


class VethBridge(Driver):
    """veth pairs whose host ends are ports of one Linux bridge."""

    name = "veth-bridge"
    summary = "veth pair per endpoint, host end on a Linux bridge (no NAT)"

    def plan(self, plan: Plan) -> None:
        """Name the bridge and one host-side veth end per endpoint."""
        plan_bridge_ports(plan, plan.name("br"))

    def provision(self, host: IPRoute, backend: Backend, plan: Plan) -> dict[str, Any]:
        """Create the bridge, then a veth pair per endpoint with one end inside."""
        bridge = plan.name("br")
        with netlink_step(f"creating bridge {bridge}"):
            host.link("add", ifname=bridge, kind="bridge", mtu=plan.mtu)
            bridge_idx = host.link_lookup(ifname=bridge)[0]
            host.link("set", index=bridge_idx, state="up")

        for ep in plan.endpoints:
            outer = host_end(plan, ep.role, ep.pair)
            add_endpoint_veth(host, outer, ep, plan.mtu, master=bridge_idx)
            configure_endpoint(backend, ep, plan.mtu)

        return {"name": self.name, "bridge": bridge, "bridge_type": "linux"}


def host_end(plan: Plan, role: str, pair: int) -> str:
    """Name the host-side end of an endpoint's veth pair."""
    return plan.name(f"v{role[0]}{pair}")


def plan_bridge_ports(plan: Plan, bridge: str) -> list[str]:
    """Plan a bridge with one veth port per endpoint; return the port names.

    The ports vanish with their endpoints' namespaces, so teardown waits for
    them instead of deleting each one.
    """
    ends = [host_end(plan, ep.role, ep.pair) for ep in plan.endpoints]
    plan.host_links = [bridge, *ends]
    plan.follow_endpoints = set(ends)
    return ends
