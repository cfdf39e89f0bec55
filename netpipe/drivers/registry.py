"""Finding drivers by name: netpipe's own, then those of other packages.

A package adds a driver without touching netpipe by declaring an entry point
in the group ``netpipe.drivers`` whose name is the driver's name and whose
object is its :class:`~netpipe.drivers.base.Driver` subclass::

    [project.entry-points."netpipe.drivers"]
    veth-direct = "netpipe_veth_direct:VethDirect"

A plugin that fails to load is reported by ``netpipe drivers`` with its
error, and is not offered as a driver.
"""

from __future__ import annotations

import logging
from functools import cache
from importlib.metadata import entry_points

from netpipe.drivers.base import Driver
from netpipe.drivers.host import Host
from netpipe.drivers.ipvlan import IpvlanL2, IpvlanL3, IpvlanL3s
from netpipe.drivers.macvlan import (
    MacvlanBridge,
    MacvlanPassthru,
    MacvlanPrivate,
    MacvlanVepa,
)
from netpipe.drivers.ovs import Ovs
from netpipe.drivers.routed import Routed
from netpipe.drivers.veth_bridge import VethBridge
from netpipe.drivers.veth_nat import VethNat
from netpipe.drivers.vxlan import Vxlan
from netpipe.errors import ConfigError

log = logging.getLogger(__name__)

GROUP = "netpipe.drivers"
BUILTIN: tuple[type[Driver], ...] = (
    VethBridge,
    MacvlanBridge,
    MacvlanPrivate,
    MacvlanVepa,
    MacvlanPassthru,
    IpvlanL3,
    IpvlanL2,
    IpvlanL3s,
    Vxlan,
    Ovs,
    Routed,
    VethNat,
    Host,
)


@cache
def _discover() -> tuple[dict[str, type[Driver]], dict[str, str]]:
    """Load every driver once: (name -> class, name -> where it comes from)."""
    drivers: dict[str, type[Driver]] = {cls.name: cls for cls in BUILTIN}
    sources = {cls.name: "netpipe (built in)" for cls in BUILTIN}
    for ep in entry_points(group=GROUP):
        origin = f"{ep.dist.name if ep.dist else '?'} ({ep.value})"
        if ep.name in drivers:
            log.warning("driver %s from %s ignored: the name is taken", ep.name, origin)
            continue
        try:
            cls = ep.load()
        except Exception as exc:
            sources[ep.name] = f"{origin}: failed to load: {exc}"
            continue
        if not (isinstance(cls, type) and issubclass(cls, Driver)):
            sources[ep.name] = f"{origin}: failed to load: not a netpipe Driver"
            continue
        if cls.name != ep.name:
            sources[ep.name] = (
                f"{origin}: failed to load: the class calls itself {cls.name!r}"
            )
            continue
        drivers[ep.name] = cls
        sources[ep.name] = origin
    return drivers, sources


def known_drivers() -> dict[str, type[Driver]]:
    """Return every driver that loaded, by name."""
    return dict(_discover()[0])


def driver_sources() -> dict[str, str]:
    """Return where every driver (or broken plugin) comes from, by name."""
    return dict(_discover()[1])


def get_driver(name: str) -> Driver:
    """Return a new instance of the driver called ``name``."""
    drivers = known_drivers()
    if name not in drivers:
        raise ConfigError(
            f"unknown driver {name!r}; allowed: {', '.join(sorted(drivers))}."
        )
    return drivers[name]()
