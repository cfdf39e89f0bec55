"""veth-nat: veth + bridge with the servers behind published ports (DNAT).

The study's real veth case: ``docker run -p port:port`` publishes a server on
the host's address, and clients reach it there, so every packet is
translated. Here the bridge and the NAT live in a router namespace of the
cell's own (``np<token>rt``) that stands in for the host: the bridge carries
the published "host" address, an nftables table there DNATs each pair's port
to its server and masquerades the hairpinned connection to the host address
(Docker's hairpin NAT), so the reply comes back through the translation. The
root namespace's firewall is never touched; the table vanishes with the
namespace. Set against veth-bridge, this separates NAT cost from bridge cost.
"""

from __future__ import annotations

import ipaddress
import shutil
import tempfile
from typing import Any

from pyroute2 import IPRoute

from netpipe.backends import Backend
from netpipe.backends.netns import NetnsBackend
from netpipe.drivers import router
from netpipe.drivers.base import Plan, netlink_step
from netpipe.drivers.veth_bridge import VethBridge, host_end
from netpipe.errors import ProvisionError
from netpipe.naming import check_own_name

NFT_TIMEOUT_S = 10.0


class VethNat(VethBridge):
    """veth-bridge in a router namespace, servers reached through DNAT."""

    name = "veth-nat"
    summary = "veth pair per endpoint on a bridge, servers behind DNAT (docker -p)"

    def unavailable_reason(
        self, host: IPRoute, parent: str | None, scratch: str
    ) -> str | None:
        """Check that nft exists and that this kernel can make a NAT chain."""
        nft = shutil.which("nft")
        if nft is None:
            return (
                "the nft command (nftables) is not installed; install it with "
                "apt-get install -y nftables."
            )
        backend = NetnsBackend()
        try:
            backend.create(scratch)
            code, said = _run_nft(
                backend,
                scratch,
                nft,
                "table ip npprobe {\n chain pre { type nat hook prerouting "
                "priority dstnat; policy accept; }\n}\n",
            )
        finally:
            backend.remove(scratch)
            backend.close()
        if code != 0:
            return (
                f"this kernel cannot make an nftables NAT chain ({said}); it needs "
                "nf_tables and nft_nat (CONFIG_NF_TABLES, CONFIG_NFT_NAT)."
            )
        return None

    def plan(self, plan: Plan) -> None:
        """Bridge and veth ends go in the router namespace, not the root one."""
        router.plan_router(plan)
        plan.host_links = []
        plan.follow_endpoints = set()

    def provision(self, host: IPRoute, backend: Backend, plan: Plan) -> dict[str, Any]:
        """Build veth-bridge in the router, give it the host address, add NAT."""
        rt_name = router.router_name(plan)
        rt = router.create_router(backend, plan)
        settings = super().provision(rt, backend, plan)
        bridge = settings["bridge"]
        ends = [host_end(plan, ep.role, ep.pair) for ep in plan.endpoints]
        router.check_router_mtu(rt, plan, [bridge, *ends])

        published = _published_address(plan)
        with netlink_step(f"adding the host address {published} to {bridge}"):
            rt.addr(
                "add",
                index=rt.link_lookup(ifname=bridge)[0],
                address=str(published.ip),
                prefixlen=published.network.prefixlen,
            )
        table = check_own_name(plan.name("nat"))
        ruleset, rules = _ruleset(table, plan, published)
        nft = shutil.which("nft")
        if nft is None:
            raise ProvisionError(
                "the nft command (nftables) is not installed; install it with "
                "apt-get install -y nftables."
            )
        code, said = _run_nft(backend, rt_name, nft, ruleset)
        if code != 0:
            raise ProvisionError(
                f"nft refused the NAT table {table} in {rt_name} (exit {code}): {said}"
            )
        for ep in plan.endpoints:
            if ep.role == "client":
                ep.connect_to = str(published.ip)

        return {
            **settings,
            "name": self.name,
            "router_netns": rt_name,
            "published_address": str(published.ip),
            "nat_table": f"ip {table}",
            "nat_rules": rules,
        }


def _published_address(plan: Plan) -> ipaddress.IPv4Interface:
    """The host address: the pool's last usable address, if no endpoint has it."""
    pool = plan.endpoints[0].address.network
    address = ipaddress.IPv4Interface(f"{pool.broadcast_address - 1}/{pool.prefixlen}")
    if any(ep.address.ip == address.ip for ep in plan.endpoints):
        raise ProvisionError(
            f"veth-nat needs one address of network.address_pool {pool} for the "
            f"published host address ({address.ip}), but every usable address "
            "is an endpoint's; use a pool at least one bit larger."
        )
    return address


def _ruleset(
    table: str, plan: Plan, published: ipaddress.IPv4Interface
) -> tuple[str, list[str]]:
    """Return the nft script and its rules, built from validated values only."""
    pool = published.network
    host_ip = published.ip
    rules = []
    for ep in plan.endpoints:
        if ep.role != "server":
            continue
        port = int(plan.base_port) + ep.pair
        for proto in ("tcp", "udp"):
            rules.append(
                f"ip daddr {host_ip} {proto} dport {port} "
                f"dnat to {ep.address.ip}:{port}"
            )
    # Hairpin: client and server share the bridge, so without SNAT the server
    # would answer the client directly, past the translation.
    masquerade = f"ct status dnat ip saddr {pool} ip daddr {pool} snat to {host_ip}"
    text = (
        f"table ip {table} {{\n"
        " chain prerouting {\n"
        "  type nat hook prerouting priority dstnat; policy accept;\n"
        + "".join(f"  {r}\n" for r in rules)
        + " }\n"
        " chain postrouting {\n"
        "  type nat hook postrouting priority srcnat; policy accept;\n"
        f"  {masquerade}\n"
        " }\n"
        "}\n"
    )
    return text, [*rules, masquerade]


def _run_nft(
    backend: Backend, netns: str, nft: str, script: str
) -> tuple[int | None, str]:
    """Run ``nft -f`` on ``script`` inside ``netns``; return (exit code, output)."""
    with tempfile.NamedTemporaryFile("w", prefix="netpipe-nft-", suffix=".nft") as f:
        f.write(script)
        f.flush()
        proc = backend.spawn(netns, [nft, "-f", f.name])
        try:
            code = proc.wait(timeout=NFT_TIMEOUT_S)
            out, err = proc.output()
        finally:
            proc.close()
    return code, (err or out).strip()[:300] or "no output"
