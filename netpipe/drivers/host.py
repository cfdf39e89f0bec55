"""host: no container network at all, iperf3 on the node's own stack.

The baseline the other drivers are measured against, like ``docker run
--network host``: servers and clients run in the namespace netpipe started
in and talk over loopback (127.0.0.1, one port per pair), so no veth, bridge
or NAT is crossed. The endpoint namespaces still exist, each with an np0 veth
end (its peer np1 beside it) holding its address at the cell's MTU, so a cell
looks like any other; no traffic crosses them. The loopback MTU is left as it
is: the cell file says ``mtu_applied: false`` and the MTU the traffic really
had (``path_mtu``), while the TCP MSS (``-M``) still follows the cell's MTU.
"""

from __future__ import annotations

from typing import Any

from pyroute2 import IPRoute

from netpipe.backends import Backend
from netpipe.drivers.base import (
    Driver,
    Plan,
    link_mtu,
    netlink_step,
)

LOOPBACK = "127.0.0.1"
PEER_IFNAME = "np1"


class Host(Driver):
    """iperf3 over loopback in the starting namespace (host networking)."""

    name = "host"
    summary = "no container network: iperf3 over loopback on the node (baseline)"

    def plan(self, plan: Plan) -> None:
        """Processes run in the starting namespace; no host links are made."""
        plan.host_network = True
        for ep in plan.endpoints:
            if ep.role == "server":
                ep.listen_on = LOOPBACK
            else:
                ep.connect_to = LOOPBACK

    def provision(self, host: IPRoute, backend: Backend, plan: Plan) -> dict[str, Any]:
        """Give each endpoint an np0 with its address; leave loopback be."""
        for ep in plan.endpoints:
            inside = backend.sockets[ep.netns]
            with netlink_step(f"creating {ep.ifname} in {ep.netns}"):
                # Not every kernel has dummy devices (CONFIG_DUMMY); a veth
                # pair with both ends inside works everywhere veth-bridge does.
                inside.link(
                    "add",
                    ifname=PEER_IFNAME,
                    kind="veth",
                    mtu=plan.mtu,
                    peer={"ifname": ep.ifname, "mtu": plan.mtu},
                )
                # Not configure_endpoint: its first guess of np0's index
                # would name the peer here.
                idx = inside.link_lookup(ifname=ep.ifname)[0]
                inside.link("set", index=idx, state="up")
                inside.addr(
                    "add",
                    index=idx,
                    address=str(ep.address.ip),
                    prefixlen=ep.address.network.prefixlen,
                )
        return {
            "name": self.name,
            "path": f"loopback ({LOOPBACK}) in the starting namespace",
            "mtu_applied": False,
            "path_mtu": link_mtu(host, "lo"),
        }
