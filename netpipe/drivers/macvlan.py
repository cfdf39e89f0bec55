"""macvlan-bridge: a macvlan sub-device per endpoint, in bridge mode.

Every sub-device has its own MAC address on the parent; in bridge mode the
kernel switches frames between sub-devices of one parent in memory. The
other modes are subclasses: private, VEPA and passthru cannot join the two
endpoints of a pair on one node, so their cells are skipped there before
anything is provisioned.
"""

from __future__ import annotations

from typing import Any

from netpipe.drivers import lower

# The topology with both endpoints of a pair on one node; every other one
# (``switched``) puts a pair's server and client on different nodes.
LOCAL = "local"


class MacvlanBridge(lower.SubDeviceDriver):
    """macvlan sub-devices in bridge mode on one parent."""

    name = "macvlan-bridge"
    summary = "macvlan sub-device per endpoint, bridge mode"
    kind = "macvlan"
    mode = "bridge"

    def mode_attrs(self) -> dict[str, Any]:
        """Ask for the mode by its name."""
        return {"macvlan_mode": self.mode}


class MacvlanPrivate(MacvlanBridge):
    """macvlan sub-devices in private mode: isolated from each other."""

    name = "macvlan-private"
    summary = "macvlan sub-device per endpoint, private mode"
    mode = "private"

    def inapplicable_reason(self, topology: str, pairs: int) -> str | None:
        """Private sub-devices of one parent never reach each other."""
        if topology == LOCAL:
            return (
                "macvlan private mode drops every frame between sub-devices of "
                "one parent, so the two endpoints of a pair on one node can never "
                "reach each other; it can only carry a pair across nodes."
            )
        return None


class MacvlanVepa(MacvlanBridge):
    """macvlan sub-devices in VEPA mode: every frame goes out to the switch."""

    name = "macvlan-vepa"
    summary = "macvlan sub-device per endpoint, VEPA mode (hairpin switch)"
    mode = "vepa"

    def inapplicable_reason(self, topology: str, pairs: int) -> str | None:
        """On one node VEPA needs a hairpin switch that a veth uplink is not."""
        if topology == LOCAL:
            return (
                "macvlan VEPA mode sends every frame out of the parent and relies "
                "on an 802.1Qbg switch to hairpin it back, which the veth uplink "
                "of a single node is not, so the endpoints of a pair on one node "
                "cannot reach each other; it can only carry a pair across nodes."
            )
        return None


class MacvlanPassthru(MacvlanBridge):
    """One macvlan sub-device that owns its parent."""

    name = "macvlan-passthru"
    summary = "macvlan sub-device owning its parent, passthru mode"
    mode = "passthru"

    def inapplicable_reason(self, topology: str, pairs: int) -> str | None:
        """A parent takes one passthru sub-device; a node must hold one endpoint."""
        if topology == LOCAL:
            return (
                "macvlan passthru mode allows one sub-device per parent, but the "
                "server and client of a pair on one node need two; it can only "
                "carry a pair whose endpoints are on different nodes."
            )
        if pairs > 1:
            return (
                f"macvlan passthru mode allows one sub-device per parent, but "
                f"{pairs} pairs put {pairs} endpoints on each node; use pairs: 1."
            )
        return None
