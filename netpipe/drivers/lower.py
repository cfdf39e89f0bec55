"""The lower device that macvlan and ipvlan sub-devices hang off.

On a machine with a spare NIC the user names it as ``network.parent``. Without
one, netpipe makes a veth pair for the cell, the "uplink", and uses one end as
the parent: both ends up, so the parent has carrier, and nothing of the
host's own interfaces is touched.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pyroute2 import IPRoute

from netpipe.backends import Backend
from netpipe.drivers.base import (
    ENDPOINT_IFINDEX,
    Driver,
    Plan,
    configure_endpoint,
    netlink_step,
)
from netpipe.errors import ProvisionError


class SubDeviceDriver(Driver):
    """A sub-device of one parent per endpoint (macvlan, ipvlan), by mode."""

    kind: ClassVar[str]
    mode: ClassVar[str]

    def mode_attrs(self) -> dict[str, Any]:
        """The netlink attributes that select this driver's mode."""
        raise NotImplementedError

    def unavailable_reason(
        self, host: IPRoute, parent: str | None, scratch: str
    ) -> str | None:
        """Check the configured parent."""
        return parent_reason(host, parent)

    def plan(self, plan: Plan) -> None:
        """Sub-devices are created inside the endpoints; only the uplink is ours."""
        plan_uplink(plan)

    def provision(self, host: IPRoute, backend: Backend, plan: Plan) -> dict[str, Any]:
        """Create one sub-device per endpoint directly inside its namespace."""
        parent_idx, parent = prepare_parent(host, plan)
        for ep in plan.endpoints:
            with netlink_step(f"creating {self.kind} for {ep.netns} on {parent}"):
                host.link(
                    "add",
                    ifname=ep.ifname,
                    index=ENDPOINT_IFINDEX,
                    kind=self.kind,
                    link=parent_idx,
                    mtu=plan.mtu,
                    net_ns_fd=ep.netns,
                    **self.mode_attrs(),
                )
            configure_endpoint(backend, ep, plan.mtu)
        return {
            "name": self.name,
            "mode": self.mode,
            "parent": parent,
            "parent_is_uplink": plan.parent is None,
        }


def plan_uplink(plan: Plan) -> None:
    """Add the uplink pair to the plan when no parent is configured."""
    if plan.parent is None:
        plan.host_links.append(plan.name("u0"))


def parent_reason(host: IPRoute, parent: str | None) -> str | None:
    """Say why the configured parent cannot be used, or None."""
    if parent is None:
        return None
    if not host.link_lookup(ifname=parent):
        return (
            f"the parent interface {parent!r} (network.parent) does not exist on "
            "this node; name an existing NIC or set it to null for a veth uplink."
        )
    return None


def prepare_parent(host: IPRoute, plan: Plan) -> tuple[int, str]:
    """Create the uplink or adopt the configured parent; set its MTU; return it."""
    if plan.parent is None:
        name = plan.name("u0")
        with netlink_step(f"creating uplink veth {name}"):
            host.link(
                "add",
                ifname=name,
                kind="veth",
                mtu=plan.mtu,
                peer={"ifname": plan.name("u1"), "mtu": plan.mtu},
            )
            for end in (name, plan.name("u1")):
                host.link("set", index=host.link_lookup(ifname=end)[0], state="up")
    else:
        name = plan.parent
        found = host.link_lookup(ifname=name)
        if not found:
            raise ProvisionError(f"the parent interface {name!r} does not exist.")
        current = host.link("get", index=found[0])[0].get("mtu")
        if current != plan.mtu:
            plan.restore_mtu[name] = current
            with netlink_step(f"setting MTU {plan.mtu} on parent {name}"):
                host.link("set", index=found[0], mtu=plan.mtu)
    return host.link_lookup(ifname=name)[0], name
