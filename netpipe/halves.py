"""One node's half of a switched cell: its endpoints and its part of the path.

A switched cell puts every server endpoint on one node and every client
endpoint on another; each node builds its half with the drivers' own code,
plugged into the node's data interface instead of a private uplink:

- ``veth-bridge``: the node's bridge takes the data NIC as a port, so frames
  cross the (real or emulated) switch between the two bridges;
- ``macvlan-bridge``, ``-private``, ``-vepa`` and ``-passthru``: sub-devices
  on the data NIC, which is the parent;
- ``vxlan``: a bridge and a VXLAN device per node, the tunnel running between
  the nodes' first data addresses over the data NIC.

Every other driver gives a reason, which the cell records as its skip.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPRoute

from netpipe.backends.netns import NetnsBackend
from netpipe.drivers import Endpoint, Plan, get_driver
from netpipe.drivers.base import (
    add_endpoint_veth,
    configure_endpoint,
    delete_link,
    host_link_mtus,
    link_mtu,
    netlink_step,
)
from netpipe.drivers.veth_bridge import plan_bridge_ports
from netpipe.drivers.vxlan import OVERHEAD, UDP_PORT, VNI
from netpipe.errors import ProvisionError

SUB_DEVICE = ("macvlan-bridge", "macvlan-private", "macvlan-vepa", "macvlan-passthru")
SUPPORTED = ("veth-bridge", "vxlan", *SUB_DEVICE)


def unsupported_reason(driver: str) -> str | None:
    """Why ``driver`` cannot carry a switched cell yet, or None if it can."""
    if driver in SUPPORTED:
        return None
    return (
        f"driver {driver} is not implemented for the switched topology yet; "
        f"switched cells run with {', '.join(SUPPORTED)}."
    )


def endpoint_mtu(driver: str, mtu: int) -> int:
    """The MTU of the endpoints' interfaces in a switched cell."""
    return mtu - OVERHEAD if driver == "vxlan" else mtu


@dataclass
class Half:
    """What one node builds for a switched cell."""

    driver: str
    plan: Plan
    data_interface: str
    local_data: ipaddress.IPv4Interface
    remote_data: ipaddress.IPv4Interface
    restore: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_request(cls, request: dict[str, Any], role: str) -> Half:
        """Build a half from the controller's request."""
        endpoints = [
            Endpoint(
                netns=ep["netns"],
                role=role,
                pair=ep["pair"],
                address=ipaddress.IPv4Interface(ep["address"]),
            )
            for ep in request["endpoints"]
        ]
        plan = Plan(
            token=request["token"],
            mtu=request["mtu"],
            endpoints=endpoints,
            parent=request["data_interface"],
            base_port=request["base_port"],
            endpoint_mtu=endpoint_mtu(request["driver"], request["mtu"]),
        )
        return cls(
            driver=request["driver"],
            plan=plan,
            data_interface=request["data_interface"],
            local_data=ipaddress.IPv4Interface(request["local_data"]),
            remote_data=ipaddress.IPv4Interface(request["remote_data"]),
        )

    def plan_links(self, host: IPRoute) -> None:
        """Name every link this half makes, and note the data NIC's MTU."""
        reason = unsupported_reason(self.driver)
        if reason:
            raise ProvisionError(reason)
        if not host.link_lookup(ifname=self.data_interface):
            raise ProvisionError(
                f"the data interface {self.data_interface!r} does not exist here."
            )
        self.restore[self.data_interface] = link_mtu(host, self.data_interface) or 1500
        if self.driver == "veth-bridge":
            plan_bridge_ports(self.plan, self.plan.name("br"))
        elif self.driver == "vxlan":
            ends = plan_bridge_ports(self.plan, self.plan.name("br"))
            self.plan.host_links = [self.plan.name("br"), self.plan.name("vx"), *ends]

    def provision(self, host: IPRoute, backend: NetnsBackend) -> dict[str, Any]:
        """Create this half's data path; return what it built."""
        with netlink_step(f"setting MTU {self.plan.mtu} on {self.data_interface}"):
            nic = host.link_lookup(ifname=self.data_interface)[0]
            host.link("set", index=nic, mtu=self.plan.mtu, state="up")
        built: dict[str, Any] = {
            "name": self.driver,
            "data_interface": self.data_interface,
        }
        if self.driver in SUB_DEVICE:
            built |= get_driver(self.driver).provision(host, backend, self.plan)
        elif self.driver == "veth-bridge":
            bridge = self._bridge(host, self.plan.mtu)
            with netlink_step(f"adding {self.data_interface} to bridge {bridge}"):
                host.link("set", index=nic, master=host.link_lookup(ifname=bridge)[0])
            self._endpoint_veths(host, backend, bridge)
            built |= {"bridge": bridge, "bridge_ports": [self.data_interface]}
        else:
            bridge = self._bridge(host, self.plan.endpoint_mtu)
            vx = self.plan.name("vx")
            with netlink_step(f"creating VXLAN device {vx} on {self.data_interface}"):
                host.link(
                    "add",
                    ifname=vx,
                    kind="vxlan",
                    vxlan_id=VNI,
                    vxlan_local=str(self.local_data.ip),
                    # A unicast group is the one remote end of the tunnel.
                    vxlan_group=str(self.remote_data.ip),
                    vxlan_port=UDP_PORT,
                    vxlan_link=nic,
                    mtu=self.plan.endpoint_mtu,
                    master=host.link_lookup(ifname=bridge)[0],
                    state="up",
                )
            self._endpoint_veths(host, backend, bridge)
            built |= {
                "bridge": bridge,
                "vni": VNI,
                "udp_port": UDP_PORT,
                "overhead": OVERHEAD,
                "tunnel_device": vx,
                "local": str(self.local_data.ip),
                "remote": str(self.remote_data.ip),
            }
        self._check_mtu(host, backend)
        return built

    def _bridge(self, host: IPRoute, mtu: int) -> str:
        bridge = self.plan.name("br")
        with netlink_step(f"creating bridge {bridge}"):
            host.link("add", ifname=bridge, kind="bridge", mtu=mtu)
            host.link("set", index=host.link_lookup(ifname=bridge)[0], state="up")
        return bridge

    def _endpoint_veths(
        self, host: IPRoute, backend: NetnsBackend, bridge: str
    ) -> None:
        idx = host.link_lookup(ifname=bridge)[0]
        mtu = self.plan.endpoint_mtu
        for ep in self.plan.endpoints:
            outer = self.plan.name(f"v{ep.role[0]}{ep.pair}")
            add_endpoint_veth(host, outer, ep, mtu, master=idx)
            configure_endpoint(backend, ep, mtu)

    def _check_mtu(self, host: IPRoute, backend: NetnsBackend) -> None:
        wrong = []
        for ep in self.plan.endpoints:
            got = link_mtu(backend.sockets[ep.netns], ep.ifname)
            if got != self.plan.endpoint_mtu:
                wrong.append(f"{ep.ifname} in {ep.netns} has {got}")
        got = link_mtu(host, self.data_interface)
        if got != self.plan.mtu:
            wrong.append(f"{self.data_interface} has {got}, not {self.plan.mtu}")
        if wrong:
            raise ProvisionError(
                f"the MTU did not take on every device: {'; '.join(wrong[:5])}."
            )

    def teardown(self, host: IPRoute, backend: NetnsBackend) -> set[str]:
        """Remove endpoints and links, restore the data NIC; return links left."""
        for ep in self.plan.endpoints:
            backend.remove(ep.netns)
        backend.close()
        for name in self.plan.host_links:
            if name not in self.plan.follow_endpoints:
                delete_link(host, name)
        for name, mtu in self.restore.items():
            idx = host.link_lookup(ifname=name)
            if idx:
                host.link("set", index=idx[0], mtu=mtu)
        deadline = time.monotonic() + 15
        names = set(self.plan.host_links)
        while names and time.monotonic() < deadline:
            names = {n for n, m in host_link_mtus(host, sorted(names)).items() if m}
            if names:
                time.sleep(0.02)
        return names
