"""veth-direct: the server and client of a pair joined by one veth pair.

A driver shipped as its own package, found by netpipe through the
``netpipe.drivers`` entry point; netpipe's tests install it to show that a
driver needs no change to netpipe.
"""

from __future__ import annotations

from typing import Any

from pyroute2 import IPRoute

from netpipe.backends.netns import NetnsBackend
from netpipe.drivers.base import Driver, Plan, configure_endpoint, netlink_step


class VethDirect(Driver):
    """One veth pair per server/client pair, one end in each namespace."""

    name = "veth-direct"
    summary = "one veth pair per pair, an end in each endpoint, no bridge"

    def plan(self, plan: Plan) -> None:
        """Nothing is made in the host namespace."""
        plan.host_links = []

    def provision(
        self, host: IPRoute, backend: NetnsBackend, plan: Plan
    ) -> dict[str, Any]:
        """Create each pair's veth with its two ends already in place."""
        servers = [ep for ep in plan.endpoints if ep.role == "server"]
        clients = [ep for ep in plan.endpoints if ep.role == "client"]
        for server, client in zip(servers, clients, strict=True):
            with netlink_step(f"creating veth {server.netns} <-> {client.netns}"):
                host.link(
                    "add",
                    ifname=server.ifname,
                    kind="veth",
                    mtu=plan.mtu,
                    net_ns_fd=server.netns,
                    peer={
                        "ifname": client.ifname,
                        "net_ns_fd": client.netns,
                        "mtu": plan.mtu,
                    },
                )
            configure_endpoint(backend, server, plan.mtu)
            configure_endpoint(backend, client, plan.mtu)
        return {"name": self.name, "topology": "point-to-point veth"}
