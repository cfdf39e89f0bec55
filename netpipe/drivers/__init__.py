"""Drivers: how an endpoint's data interface is plugged into its node.

One module per driver. Each defines a :class:`Driver` subclass with a
capability check (:meth:`Driver.unavailable_reason`) that says, in a sentence,
why this kernel or host cannot run it, and the provisioning of its links.
Drivers of other packages are found through the ``netpipe.drivers`` entry
point group (see :mod:`netpipe.drivers.registry`).
"""

from __future__ import annotations

from netpipe.drivers.base import Driver, Endpoint, Plan
from netpipe.drivers.registry import driver_sources, get_driver, known_drivers

__all__ = [
    "Driver",
    "Endpoint",
    "Plan",
    "driver_sources",
    "get_driver",
    "known_drivers",
]
