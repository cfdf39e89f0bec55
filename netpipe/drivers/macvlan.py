"""macvlan-bridge: a macvlan sub-device per endpoint, in bridge mode.

Every sub-device has its own MAC address on the parent; in bridge mode the
kernel switches frames between sub-devices of one parent in memory.
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
)


class MacvlanBridge(Driver):
    """macvlan sub-devices in bridge mode on one parent."""

    name = "macvlan-bridge"
    summary = "macvlan sub-device per endpoint, bridge mode"
    mode = "bridge"

    def unavailable_reason(
        self, host: IPRoute, parent: str | None, scratch: str
    ) -> str | None:
        """macvlan is probed at provisioning; only the parent is checked here."""
        return lower.parent_reason(host, parent)

    def plan(self, plan: Plan) -> None:
        """Sub-devices are created inside the endpoints; only the uplink is ours."""
        lower.plan_uplink(plan)

    def provision(
        self, host: IPRoute, backend: NetnsBackend, plan: Plan
    ) -> dict[str, Any]:
        """Create one macvlan per endpoint directly inside its namespace."""
        parent_idx, parent = lower.prepare_parent(host, plan)
        for ep in plan.endpoints:
            with netlink_step(f"creating macvlan for {ep.netns} on {parent}"):
                host.link(
                    "add",
                    ifname=ep.ifname,
                    index=ENDPOINT_IFINDEX,
                    kind="macvlan",
                    link=parent_idx,
                    macvlan_mode=self.mode,
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
