"""What this machine's own network already uses, read through netlink.

Read-only: the config checks an address pool against the host's addresses
before anything is provisioned, so endpoint addresses never shadow a route
the host depends on.
"""

from __future__ import annotations

import ipaddress
import socket

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netpipe.naming import PREFIX


def host_networks() -> list[tuple[str, ipaddress.IPv4Interface]]:
    """The IPv4 addresses of this namespace's interfaces, by interface name.

    Interfaces named like netpipe's own (``np...``) are left out: those are
    the endpoints and bridges of cells and tests, whose addresses come from
    the pools being checked.
    """
    try:
        with IPRoute() as ip:
            names = {
                link["index"]: link.get_attr("IFLA_IFNAME") for link in ip.get_links()
            }
            addrs = ip.get_addr(family=socket.AF_INET)
    except (OSError, NetlinkError):
        return []
    found = []
    for addr in addrs:
        name = names.get(addr["index"]) or "?"
        value = addr.get_attr("IFA_ADDRESS")
        if name.startswith(PREFIX) or value is None:
            continue
        found.append((name, ipaddress.IPv4Interface(f"{value}/{addr['prefixlen']}")))
    return found


def overlaps(pool: ipaddress.IPv4Network) -> list[str]:
    """Describe every host address whose network overlaps ``pool``."""
    return [
        f"{iface} on {name}"
        for name, iface in host_networks()
        if iface.network.overlaps(pool)
    ]
