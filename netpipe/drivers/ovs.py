"""ovs: a veth pair per endpoint, the host ends ports of an Open vSwitch bridge.

Open vSwitch replaces the Linux bridge of veth-bridge; the endpoints still
need veth pairs. It needs three things of the node, and the capability check
names each one missing: the kernel datapath (CONFIG_OPENVSWITCH, seen as the
``ovs_datapath`` generic netlink family), the ``ovs-vsctl`` command, and the
running daemons (``ovsdb-server`` and ``ovs-vswitchd``). The bridge is made
with ``ovs-vsctl``, the veth pairs through netlink.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink import genlmsg
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import GenericNetlinkSocket

from netpipe.backends import Backend
from netpipe.drivers.base import (
    Driver,
    Plan,
    add_endpoint_veth,
    configure_endpoint,
    netlink_step,
)
from netpipe.drivers.veth_bridge import host_end, plan_bridge_ports
from netpipe.errors import ProvisionError

log = logging.getLogger(__name__)

DATAPATH_FAMILY = "ovs_datapath"
TIMEOUT_S = 10


class Ovs(Driver):
    """veth pairs whose host ends are ports of one Open vSwitch bridge."""

    name = "ovs"
    summary = "veth pair per endpoint, host end on an Open vSwitch bridge"

    def unavailable_reason(
        self, host: IPRoute, parent: str | None, scratch: str
    ) -> str | None:
        """Name every missing piece: kernel datapath, ovs-vsctl, daemons."""
        missing = []
        if not kernel_has_datapath():
            missing.append(
                "the kernel has no Open vSwitch datapath (it was built without "
                "CONFIG_OPENVSWITCH, or the openvswitch module is not loaded)"
            )
        vsctl = shutil.which("ovs-vsctl")
        if vsctl is None:
            missing.append(
                "ovs-vsctl was not found on PATH (Debian package openvswitch-switch)"
            )
        else:
            missing += daemon_problems(vsctl)
        if missing:
            return f"Open vSwitch cannot run here: {'; '.join(missing)}."
        return None

    def plan(self, plan: Plan) -> None:
        """Name the bridge and one host-side veth end per endpoint."""
        plan_bridge_ports(plan, plan.name("ovs"))

    def provision(self, host: IPRoute, backend: Backend, plan: Plan) -> dict[str, Any]:
        """Create the OVS bridge, then a veth pair per endpoint as its ports."""
        bridge = plan.name("ovs")
        vsctl(
            "add-br", bridge, "--", "set", "Interface", bridge,
            f"mtu_request={plan.mtu}",
        )  # fmt: skip
        with netlink_step(f"bringing up OVS bridge {bridge}"):
            host.link("set", index=host.link_lookup(ifname=bridge)[0], state="up")

        ports: list[str] = []
        for ep in plan.endpoints:
            outer = host_end(plan, ep.role, ep.pair)
            add_endpoint_veth(host, outer, ep, plan.mtu)
            ports += ["--", "add-port", bridge, outer]
            configure_endpoint(backend, ep, plan.mtu)
        # One ovs-vsctl transaction for every port: a call per port costs a
        # database round trip each.
        vsctl(*ports[1:])

        return {"name": self.name, "bridge": bridge, "bridge_type": "openvswitch"}

    def teardown(self, host: IPRoute, plan: Plan) -> None:
        """Remove the bridge from the OVS database, then any link left."""
        try:
            vsctl("--if-exists", "del-br", plan.name("ovs"))
        except ProvisionError as exc:
            log.error("%s; deleting its links through netlink instead", exc)
        super().teardown(host, plan)


def kernel_has_datapath() -> bool:
    """Whether the kernel's Open vSwitch datapath answers on generic netlink."""
    sock = GenericNetlinkSocket()
    try:
        sock.bind(DATAPATH_FAMILY, genlmsg)
    except NetlinkError:
        return False
    finally:
        sock.close()
    return True


def daemon_problems(vsctl_path: str) -> list[str]:
    """Say which of ovsdb-server and ovs-vswitchd does not answer."""
    problems = []
    db = _run([vsctl_path, "--timeout=2", "show"])
    if db is not None:
        problems.append(f"ovsdb-server does not answer ({db})")
    appctl = shutil.which("ovs-appctl")
    switchd = (
        "ovs-appctl was not found"
        if appctl is None
        else _run([appctl, "--timeout=2", "-t", "ovs-vswitchd", "version"])
    )
    if switchd is not None:
        problems.append(f"ovs-vswitchd is not running ({switchd})")
    return problems


def vsctl(*args: str) -> None:
    """Run one ovs-vsctl transaction; raise ProvisionError if it fails."""
    path = shutil.which("ovs-vsctl")
    if path is None:
        raise ProvisionError("ovs-vsctl was not found on PATH; install Open vSwitch.")
    error = _run([path, f"--timeout={TIMEOUT_S}", *args])
    if error is not None:
        raise ProvisionError(f"ovs-vsctl {' '.join(args)} failed: {error}.")


def _run(argv: list[str]) -> str | None:
    """Run a command (an argument list, no shell); return its error, or None."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=TIMEOUT_S + 5, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        return done.stderr.strip() or f"exit status {done.returncode}"
    return None
