"""Which driver mode can carry which pair in which topology, and why not."""

from __future__ import annotations

import shutil

import pytest
from pyroute2 import IPRoute

from netpipe.config import validate
from netpipe.drivers import known_drivers
from netpipe.drivers import ovs as ovs_module
from netpipe.drivers.base import Plan
from netpipe.drivers.ipvlan import IpvlanL2, IpvlanL3, IpvlanL3s
from netpipe.drivers.ovs import Ovs
from netpipe.drivers.vxlan import OVERHEAD, Vxlan
from netpipe.errors import ProvisionError
from netpipe.matrix import Cell
from netpipe.runner import make_plan

# "switched" puts a pair's server and client on different nodes; the rule
# is decided per topology, so a topology no machine here has still shows it.
LOCAL, SWITCHED = "local", "switched"


@pytest.mark.parametrize(
    ("driver", "topology", "pairs", "applicable"),
    [
        ("macvlan-bridge", LOCAL, 1, True),
        ("macvlan-bridge", LOCAL, 8, True),
        ("macvlan-bridge", SWITCHED, 8, True),
        ("macvlan-private", LOCAL, 1, False),
        ("macvlan-private", SWITCHED, 1, True),
        ("macvlan-private", SWITCHED, 8, True),
        ("macvlan-vepa", LOCAL, 1, False),
        ("macvlan-vepa", SWITCHED, 1, True),
        ("macvlan-vepa", SWITCHED, 8, True),
        ("macvlan-passthru", LOCAL, 1, False),
        ("macvlan-passthru", SWITCHED, 1, True),
        ("macvlan-passthru", SWITCHED, 2, False),
        ("ipvlan-l2", LOCAL, 4, True),
        ("ipvlan-l3", LOCAL, 4, True),
        ("ipvlan-l3s", LOCAL, 4, True),
        ("vxlan", LOCAL, 4, True),
        ("vxlan", SWITCHED, 4, True),
        ("ovs", LOCAL, 4, True),
    ],
)
def test_mode_carries_a_pair_only_where_it_can(
    driver: str, topology: str, pairs: int, applicable: bool
) -> None:
    reason = known_drivers()[driver]().inapplicable_reason(topology, pairs)

    assert (reason is None) == applicable, reason


@pytest.mark.parametrize(
    ("driver", "words"),
    [
        ("macvlan-private", ["private", "one node", "across nodes"]),
        ("macvlan-vepa", ["VEPA", "802.1Qbg", "one node"]),
        ("macvlan-passthru", ["passthru", "one sub-device per parent", "two"]),
    ],
)
def test_local_skip_reason_says_why_in_a_sentence(
    driver: str, words: list[str]
) -> None:
    reason = known_drivers()[driver]().inapplicable_reason(LOCAL, 1)

    assert reason is not None and reason.endswith(".")
    for word in words:
        assert word in reason


def test_passthru_across_nodes_names_the_pair_count() -> None:
    reason = known_drivers()["macvlan-passthru"]().inapplicable_reason(SWITCHED, 3)

    assert reason is not None and "3 pairs" in reason and "pairs: 1" in reason


def test_every_macvlan_mode_asks_the_kernel_for_its_own_mode() -> None:
    modes = {
        name: getattr(cls, "mode", None)
        for name, cls in known_drivers().items()
        if name.startswith("macvlan-")
    }

    assert modes == {
        "macvlan-bridge": "bridge",
        "macvlan-private": "private",
        "macvlan-vepa": "vepa",
        "macvlan-passthru": "passthru",
    }


def test_ipvlan_modes_are_the_kernel_modes() -> None:
    assert [cls.mode for cls in (IpvlanL2, IpvlanL3, IpvlanL3s)] == ["l2", "l3", "l3s"]
    assert {IpvlanL2.name, IpvlanL3s.name} <= set(known_drivers())


def _plan(mtu: int) -> Plan:
    """A planned two-pair vxlan cell; planning creates nothing."""
    matrix = [{"driver": ["vxlan"], "protocol": ["tcp"], "mtu": [mtu], "pairs": [2]}]
    cell = Cell("local", "vxlan", "tcp", mtu, 2, 1)
    plan = make_plan(cell, validate({"matrix": matrix}), "ab12")
    Vxlan().plan(plan)
    return plan


def test_vxlan_plan_lowers_only_the_endpoint_mtu_by_the_overhead() -> None:
    plan = _plan(1500)

    assert plan.mtu == 1500
    assert plan.endpoint_mtu == 1500 - OVERHEAD == 1450
    # Every device lives in the two node namespaces, none on the host.
    assert plan.extra_netns == ["npab12nds", "npab12ndc"]
    assert plan.host_links == []


def test_vxlan_refuses_an_mtu_that_leaves_no_room_inside_the_tunnel() -> None:
    with pytest.raises(ProvisionError, match="MTU 117 leaves 67 bytes"):
        _plan(117)


def test_ovs_reason_names_every_missing_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ovs_module, "kernel_has_datapath", lambda: False)
    monkeypatch.setattr(shutil, "which", lambda name: None)

    with IPRoute() as host:
        reason = Ovs().unavailable_reason(host, None, "npab12pr")

    assert reason is not None
    assert "CONFIG_OPENVSWITCH" in reason
    assert "ovs-vsctl was not found" in reason


def test_ovs_reason_names_the_daemons_when_the_tools_are_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ovs_module, "kernel_has_datapath", lambda: True)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(ovs_module, "_run", lambda argv: "db.sock: connect failed")

    with IPRoute() as host:
        reason = Ovs().unavailable_reason(host, None, "npab12pr")

    assert reason is not None
    assert "ovsdb-server does not answer" in reason
    assert "ovs-vswitchd is not running" in reason
    assert "CONFIG_OPENVSWITCH" not in reason


def test_ovs_is_unavailable_on_this_machine_for_what_it_lacks() -> None:
    with IPRoute() as host:
        reason = Ovs().unavailable_reason(host, None, "npab12pr")

    if ovs_module.kernel_has_datapath() and shutil.which("ovs-vsctl"):
        pytest.skip("this machine has Open vSwitch")
    assert reason is not None and reason.startswith("Open vSwitch cannot run here")
    if not ovs_module.kernel_has_datapath():
        assert "CONFIG_OPENVSWITCH" in reason
    if shutil.which("ovs-vsctl") is None:
        assert "ovs-vsctl was not found" in reason
