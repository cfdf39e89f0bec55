"""routed: Calico's data path, a veth per endpoint and a /32 route, no bridge.

Each endpoint's veth ends in a router namespace of the cell's own
(``np<token>rt``), which stands in for the node's host side: forwarding is on
there, each endpoint has a /32 route to its veth end, and the ends answer ARP
for every other address by proxy ARP, so endpoint-to-endpoint traffic is
routed at L3 without a bridge or any encapsulation. The root namespace's
sysctls and routes are never touched.
"""

from __future__ import annotations

from typing import Any

from pyroute2 import IPRoute

from netpipe.backends import Backend
from netpipe.drivers import router
from netpipe.drivers.base import (
    Driver,
    Plan,
    add_endpoint_veth,
    configure_endpoint,
    netlink_step,
)


class Routed(Driver):
    """veth pairs routed by /32 routes in a router namespace, with proxy ARP."""

    name = "routed"
    summary = "veth pair per endpoint, /32 routes and proxy ARP, no bridge (Calico)"

    def plan(self, plan: Plan) -> None:
        """Everything lives in the router namespace; no root-namespace links."""
        router.plan_router(plan)

    def provision(self, host: IPRoute, backend: Backend, plan: Plan) -> dict[str, Any]:
        """Create the router, then a veth pair and a /32 route per endpoint."""
        rt_name = router.router_name(plan)
        rt = router.create_router(backend, plan)
        # The endpoints keep the pool's prefix, so a peer is on-link for them:
        # they ARP for it, and the router end answers for it by proxy ARP.
        router.set_sysctl(rt_name, "net/ipv4/conf/all/proxy_arp", "1")

        ends = []
        routes = []
        for ep in plan.endpoints:
            outer = _router_end(plan, ep.role, ep.pair)
            add_endpoint_veth(rt, outer, ep, plan.mtu)
            with netlink_step(f"routing {ep.address.ip} to {outer} in {rt_name}"):
                idx = rt.link_lookup(ifname=outer)[0]
                rt.route("add", dst=f"{ep.address.ip}/32", oif=idx)
            # Proxy ARP replies at once rather than after up to 0.8 s, as in
            # Calico; a new namespace has no neigh/default to set this once.
            router.set_sysctl(rt_name, f"net/ipv4/neigh/{outer}/proxy_delay", "0")
            configure_endpoint(backend, ep, plan.mtu)
            ends.append(outer)
            routes.append(f"{ep.address.ip}/32 dev {outer}")
        router.check_router_mtu(rt, plan, ends)

        return {
            "name": self.name,
            "router_netns": rt_name,
            "forwarding": "on in the router namespace only",
            "neighbour_resolution": "proxy ARP on the router ends",
            "encapsulation": None,
            "routes": routes,
        }


def _router_end(plan: Plan, role: str, pair: int) -> str:
    return plan.name(f"r{role[0]}{pair}")
