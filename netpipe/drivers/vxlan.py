"""vxlan: the overlay data path of libnetwork (Socketplane): veth, bridge, VXLAN.

Each node has a Linux bridge; an endpoint's veth has its outer end on that
bridge, and a VXLAN device on the bridge tunnels frames to the other node in
UDP. On one node the path still crosses the tunnel: the server side and the
client side each get a "node" namespace holding their bridge and VXLAN
device, and a veth pair between the two node namespaces is the underlay.
Nothing is created in the host's own namespace, and removing the node
namespaces removes every device of the cell.

The encapsulation costs 50 bytes per frame on an IPv4 underlay, so the
endpoints get the cell's MTU minus 50 and the underlay carries the cell's.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pyroute2 import IPRoute

from netpipe.backends import Backend
from netpipe.drivers.base import (
    Driver,
    Endpoint,
    Plan,
    configure_endpoint,
    link_mtu,
    netlink_step,
)
from netpipe.errors import ProvisionError

# Outer Ethernet (14) + IPv4 (20) + UDP (8) + VXLAN (8) headers.
OVERHEAD = 50
VNI = 256  # libnetwork's first overlay VXLAN id
UDP_PORT = 4789  # IANA's VXLAN port, which libnetwork uses
# Underlay /30s, the top of 198.19.0.0/16 first; one outside the endpoints'
# pool is taken. The node namespaces hold no endpoint address, so even an
# overlap could not misroute, but distinct addresses read better in captures.
UNDERLAY_NETS = (
    ipaddress.IPv4Network("198.19.255.252/30"),
    ipaddress.IPv4Network("198.18.0.0/30"),
)
SIDES = ("server", "client")


class Vxlan(Driver):
    """Two bridges, one per node, joined by a point-to-point VXLAN tunnel."""

    name = "vxlan"
    summary = "veth + bridge per node joined by a VXLAN tunnel (libnetwork overlay)"

    def plan(self, plan: Plan) -> None:
        """Name the node namespaces and lower the endpoints' MTU by the overhead."""
        if plan.mtu - OVERHEAD < 68:
            raise ProvisionError(
                f"the MTU {plan.mtu} leaves {plan.mtu - OVERHEAD} bytes inside the "
                f"VXLAN tunnel ({OVERHEAD} bytes of encapsulation), below IPv4's "
                "minimum of 68; use an MTU of at least 118 for vxlan."
            )
        plan.extra_netns = [_node(plan, side) for side in SIDES]
        plan.endpoint_mtu = plan.mtu - OVERHEAD

    def provision(self, host: IPRoute, backend: Backend, plan: Plan) -> dict[str, Any]:
        """Create the underlay, a bridge and VXLAN device per node, then the veths."""
        net = _underlay_net(plan)
        local = dict(zip(SIDES, list(net.hosts())[:2], strict=True))
        _create_underlay(backend, plan, net, local)

        for side, remote in zip(SIDES, reversed(SIDES), strict=True):
            _create_node_bridge(backend, plan, side, local[side], local[remote])

        for ep in plan.endpoints:
            _create_endpoint_veth(backend, plan, ep)
            configure_endpoint(backend, ep, plan.endpoint_mtu)

        _check_node_mtus(backend, plan)
        return {
            "name": self.name,
            "vni": VNI,
            "udp_port": UDP_PORT,
            "overhead": OVERHEAD,
            "underlay": str(net),
            "node_netns": list(plan.extra_netns),
            "tunnel_devices": {side: _vx(plan, side) for side in SIDES},
        }


def _node(plan: Plan, side: str) -> str:
    return plan.name(f"nd{side[0]}")


def _vx(plan: Plan, side: str) -> str:
    return plan.name(f"vx{side[0]}")


def _bridge(plan: Plan, side: str) -> str:
    return plan.name(f"br{side[0]}")


def _underlay(plan: Plan, side: str) -> str:
    return plan.name(f"ul{side[0]}")


def _host_end(plan: Plan, ep: Endpoint) -> str:
    return plan.name(f"v{ep.role[0]}{ep.pair}")


def _underlay_net(plan: Plan) -> ipaddress.IPv4Network:
    """Return an underlay /30 outside the endpoints' pool, if there is one."""
    pools = {ep.address.network for ep in plan.endpoints}
    for net in UNDERLAY_NETS:
        if not any(net.overlaps(pool) for pool in pools):
            return net
    return UNDERLAY_NETS[0]


def _create_underlay(
    backend: Backend,
    plan: Plan,
    net: ipaddress.IPv4Network,
    local: dict[str, ipaddress.IPv4Address],
) -> None:
    """Join the node namespaces with a veth at the cell's MTU, addressed."""
    server, client = (_node(plan, side) for side in SIDES)
    with netlink_step(f"creating the underlay veth between {server} and {client}"):
        backend.sockets[server].link(
            "add",
            ifname=_underlay(plan, "server"),
            kind="veth",
            mtu=plan.mtu,
            peer={
                "ifname": _underlay(plan, "client"),
                "net_ns_fd": client,
                "mtu": plan.mtu,
            },
        )
    for side in SIDES:
        sock = backend.sockets[_node(plan, side)]
        with netlink_step(f"addressing the underlay in {_node(plan, side)}"):
            idx = sock.link_lookup(ifname=_underlay(plan, side))[0]
            sock.link("set", index=idx, state="up")
            sock.addr(
                "add", index=idx, address=str(local[side]), prefixlen=net.prefixlen
            )


def _create_node_bridge(
    backend: Backend,
    plan: Plan,
    side: str,
    local: ipaddress.IPv4Address,
    remote: ipaddress.IPv4Address,
) -> None:
    """In one node namespace: a bridge, and a VXLAN device to the other node."""
    node = _node(plan, side)
    sock = backend.sockets[node]
    with netlink_step(f"creating bridge {_bridge(plan, side)} in {node}"):
        sock.link(
            "add", ifname=_bridge(plan, side), kind="bridge", mtu=plan.endpoint_mtu
        )
        bridge_idx = sock.link_lookup(ifname=_bridge(plan, side))[0]
        sock.link("set", index=bridge_idx, state="up")
    with netlink_step(f"creating VXLAN device {_vx(plan, side)} in {node}"):
        sock.link(
            "add",
            ifname=_vx(plan, side),
            kind="vxlan",
            vxlan_id=VNI,
            vxlan_local=str(local),
            # A unicast group is the one remote end of a point-to-point tunnel.
            vxlan_group=str(remote),
            vxlan_port=UDP_PORT,
            vxlan_link=sock.link_lookup(ifname=_underlay(plan, side))[0],
            mtu=plan.endpoint_mtu,
            master=bridge_idx,
        )
        sock.link("set", index=sock.link_lookup(ifname=_vx(plan, side))[0], state="up")


def _create_endpoint_veth(backend: Backend, plan: Plan, ep: Endpoint) -> None:
    """A veth with its inner end in the endpoint, its outer on the node's bridge."""
    node = _node(plan, ep.role)
    sock = backend.sockets[node]
    outer = _host_end(plan, ep)
    with netlink_step(f"creating veth {outer} in {node} for {ep.netns}"):
        bridge_idx = sock.link_lookup(ifname=_bridge(plan, ep.role))[0]
        sock.link(
            "add",
            ifname=outer,
            kind="veth",
            mtu=plan.endpoint_mtu,
            master=bridge_idx,
            state="up",
            peer={
                "ifname": ep.ifname,
                "net_ns_fd": ep.netns,
                "mtu": plan.endpoint_mtu,
            },
        )


def _check_node_mtus(backend: Backend, plan: Plan) -> None:
    """Fail if a device in a node namespace did not take its MTU.

    The runner checks the endpoints and the host's links; the node
    namespaces are this driver's own, so it checks them itself.
    """
    wrong = []
    for side in SIDES:
        node = _node(plan, side)
        sock = backend.sockets[node]
        want = {_underlay(plan, side): plan.mtu}
        want[_bridge(plan, side)] = plan.endpoint_mtu
        want[_vx(plan, side)] = plan.endpoint_mtu
        for ep in plan.endpoints:
            if ep.role == side:
                want[_host_end(plan, ep)] = plan.endpoint_mtu
        for ifname, mtu in want.items():
            got = link_mtu(sock, ifname)
            if got != mtu:
                wrong.append(f"{ifname} in {node} has {got}, not {mtu}")
    if wrong:
        raise ProvisionError(
            f"the MTU did not take on every device: {'; '.join(wrong[:5])}."
        )
