"""Drivers: how an endpoint's data interface is plugged into its node.

One module per driver. Each defines a :class:`Driver` subclass with a
capability check (:meth:`Driver.unavailable_reason`) that says, in a sentence,
why this kernel or host cannot run it, and the provisioning of its links.
"""

from __future__ import annotations

from netpipe.drivers.base import Driver, Endpoint, Plan
from netpipe.drivers.ipvlan import IpvlanL3
from netpipe.drivers.macvlan import MacvlanBridge
from netpipe.drivers.veth_bridge import VethBridge
from netpipe.errors import ConfigError

_BUILTIN: dict[str, type[Driver]] = {
    cls.name: cls for cls in (VethBridge, MacvlanBridge, IpvlanL3)
}


def known_drivers() -> dict[str, type[Driver]]:
    """Return every driver netpipe knows, by name."""
    return dict(_BUILTIN)


def get_driver(name: str) -> Driver:
    """Return a new instance of the driver called ``name``."""
    try:
        return known_drivers()[name]()
    except KeyError:
        raise ConfigError(
            f"unknown driver {name!r}; allowed: {', '.join(sorted(_BUILTIN))}."
        ) from None


__all__ = ["Driver", "Endpoint", "Plan", "get_driver", "known_drivers"]
