"""ipvlan-l3: an ipvlan sub-device per endpoint, in L3 mode.

All sub-devices share the parent's MAC address; the parent steers packets to
them by IP address and they are routed, so broadcast and multicast do not
work. Not every kernel has ipvlan (CONFIG_IPVLAN), so the driver probes for it
in a throwaway namespace before a cell is provisioned. The L2 and L3S modes
are subclasses that differ only in the mode they ask for.
"""

from __future__ import annotations

from typing import Any

from pyroute2 import IPRoute

from netpipe.backends.netns import NetnsBackend
from netpipe.drivers import lower
from netpipe.drivers.base import probe_kind

IPVLAN_MODES = {"l2": 0, "l3": 1, "l3s": 2}


class IpvlanL3(lower.SubDeviceDriver):
    """ipvlan sub-devices in L3 mode on one parent."""

    name = "ipvlan-l3"
    summary = "ipvlan sub-device per endpoint, L3 mode"
    kind = "ipvlan"
    mode = "l3"

    def mode_attrs(self) -> dict[str, Any]:
        """Ask for the mode by its number."""
        return {"ipvlan_mode": IPVLAN_MODES[self.mode]}

    def unavailable_reason(
        self, host: IPRoute, parent: str | None, scratch: str
    ) -> str | None:
        """Probe for ipvlan support, then check the parent."""
        backend = NetnsBackend()
        try:
            error = probe_kind(backend, scratch, "ipvlan", **self.mode_attrs())
        finally:
            backend.close()
        if error is not None:
            return (
                f"this kernel cannot create ipvlan devices ({error}); it was "
                "built without ipvlan support (CONFIG_IPVLAN)."
            )
        return lower.parent_reason(host, parent)


class IpvlanL2(IpvlanL3):
    """ipvlan sub-devices in L2 mode: switched by MAC, broadcast works."""

    name = "ipvlan-l2"
    summary = "ipvlan sub-device per endpoint, L2 mode"
    mode = "l2"


class IpvlanL3s(IpvlanL3):
    """ipvlan sub-devices in L3S mode: L3 with the netfilter hooks of the host."""

    name = "ipvlan-l3s"
    summary = "ipvlan sub-device per endpoint, L3S mode"
    mode = "l3s"
