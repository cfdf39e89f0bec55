"""The lower device that macvlan and ipvlan sub-devices hang off.

On a machine with a spare NIC the user names it as ``network.parent``. Without
one, netpipe makes a veth pair for the cell, the "uplink", and uses one end as
the parent: both ends up, so the parent has carrier, and nothing of the
host's own interfaces is touched.
"""

from __future__ import annotations

from pyroute2 import IPRoute

from netpipe.drivers.base import Plan, netlink_step
from netpipe.errors import ProvisionError


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
