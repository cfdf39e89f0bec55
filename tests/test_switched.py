"""Switched cells on the emulated testbed: nodes check, one cell per driver.

The testbed is built once for the module: two node namespaces, each with an
sshd on its management address; the cells run netpipe on the nodes over SSH,
and their traffic must cross the emulated switch's ports.
"""

from __future__ import annotations

import copy
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyroute2 import IPRoute, NetNS

from netpipe import switched, testbed
from netpipe.config import Config, validate
from netpipe.errors import NodeError
from netpipe.matrix import Cell
from netpipe.naming import new_token
from netpipe.remote import Session, check_nodes, connect
from netpipe.runner import cell_settings, make_plan, measure
from tests.conftest import (
    REPO,
    needs_root,
    new_state_dir,
    np_links,
    np_namespaces,
)
from tests.test_testbed import _sshd_pids
from tests.test_workflow import make_project, snakemake

pytestmark = [
    pytest.mark.root,
    needs_root,
    pytest.mark.skipif(
        shutil.which("sshd", path="/usr/sbin") is None, reason="no sshd"
    ),
]

RATE_GBIT = 5


@pytest.fixture(scope="module")
def bed() -> Iterator[dict[str, Any]]:
    """A testbed for the module; after it, nothing of it may be left."""
    if Path("/sys/class/net", testbed.SWITCH).exists():
        pytest.skip("a testbed is already up on this machine")
    folder = new_state_dir() / "testbed"
    sshds = _sshd_pids()
    inventory = testbed.up(2, rate=f"{RATE_GBIT}gbit", folder=folder)
    try:
        yield {"inventory": inventory, "folder": folder}
    finally:
        testbed.down(folder)
    assert not {n for n in np_namespaces() if n.startswith(testbed.PREFIX)}
    assert not {n for n in np_links() if n.startswith(testbed.PREFIX)}
    assert _sshd_pids() <= sshds


def raw(inventory: Path, driver: str = "veth-bridge") -> dict[str, Any]:
    return {
        "inventory": str(inventory),
        "matrix": [
            {
                "topology": ["switched"],
                "driver": [driver],
                "protocol": ["tcp"],
                "mtu": [1500],
                "pairs": [1],
            }
        ],
        "repetitions": 1,
        "iperf": {"duration_s": 1, "omit_s": 0},
    }


def with_nodes(bed: dict[str, Any], change: Any) -> Config:
    """The testbed's config with node2 of its inventory changed."""
    nodes = yaml.safe_load(bed["inventory"].read_text())["nodes"]
    nodes = copy.deepcopy(nodes)
    change(nodes[1])
    data = raw(bed["inventory"])
    del data["inventory"]
    return validate({**data, "nodes": nodes})


def test_nodes_check_reports_every_node_and_what_it_can_run(bed: dict[str, Any]):
    report = check_nodes(validate(raw(bed["inventory"])))
    assert report["errors"] == [] and report["warnings"] == []
    assert set(report["nodes"]) == {"node1", "node2"}
    for answer in report["nodes"].values():
        assert answer["is_root"] and answer["iperf3_version"]
        assert answer["netpipe_version"] == report["controller"]["netpipe_version"]
        assert answer["kernel"] and answer["data_interface_found"]
        for driver in ("veth-bridge", "macvlan-bridge", "vxlan"):
            assert answer["drivers"][driver] is None
        assert "not implemented for the switched topology" in answer["drivers"]["ovs"]


def test_nodes_check_command_exits_zero_and_names_the_nodes(
    bed: dict[str, Any], tmp_path: Path
):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw(bed["inventory"])))
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "netpipe"),
            "nodes",
            "check",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "node1" in done.stdout and "node2" in done.stdout
    assert "reachable, root yes" in done.stdout


def _other_key(tmp_path: Path) -> str:
    key = tmp_path / "other_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
    )
    return str(key)


BAD = {
    "unreachable": (
        lambda n, tmp: n["ssh"].update(port=2222),
        "cannot reach 198.19.0.12:2222",
    ),
    "wrong-key": (
        lambda n, tmp: n["ssh"].update(key_file=_other_key(tmp)),
        "refused the key",
    ),
    "unknown-host-key": (
        lambda n, tmp: n["ssh"].update(known_hosts=_empty(tmp)),
        "is not in",
    ),
    "missing-data-interface": (
        lambda n, tmp: n.update(data_interface="npnothere"),
        "the data interface 'npnothere'",
    ),
    "no-iperf3": (
        lambda n, tmp: n.update(iperf3="/nonexistent/iperf3"),
        "'/nonexistent/iperf3' is not usable there",
    ),
}


def _empty(tmp: Path) -> str:
    path = tmp / "known_hosts"
    path.write_text("")
    return str(path)


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_node_is_a_clear_error_naming_it(
    bed: dict[str, Any], tmp_path: Path, case: str
):
    change, words = BAD[case]
    config = with_nodes(bed, lambda n: change(n, tmp_path))
    with pytest.raises(NodeError) as err:
        check_nodes(config)
    assert "node node2:" in str(err.value) and words in str(err.value)
    assert "node1" not in str(err.value)


def test_every_failing_node_is_named(bed: dict[str, Any], tmp_path: Path):
    nodes = yaml.safe_load(bed["inventory"].read_text())["nodes"]
    for node in nodes:
        node["iperf3"] = "/nonexistent/iperf3"
    data = raw(bed["inventory"])
    del data["inventory"]
    with pytest.raises(NodeError) as err:
        check_nodes(validate({**data, "nodes": nodes}))
    assert "2 nodes failed" in str(err.value)
    assert "node node1:" in str(err.value) and "node node2:" in str(err.value)


def _port_bytes() -> int:
    with IPRoute() as host:
        return sum(
            dict(
                host.link("get", ifname=f"{testbed.PREFIX}{i}d")[0].get("IFLA_STATS64")
            )["rx_bytes"]
            for i in (1, 2)
        )


def _node_links(i: int) -> tuple[set[str], int]:
    with NetNS(f"{testbed.PREFIX}{i}") as ns:
        names = {link.get("ifname") for link in ns.link("dump")}
        mtu = ns.link("get", ifname=testbed.DATA_IFNAME)[0].get("mtu")
    return names, mtu


@pytest.mark.parametrize(
    "driver",
    [
        "veth-bridge",
        "macvlan-bridge",
        "vxlan",
        # The modes that cannot join a pair on one node can across nodes.
        "macvlan-private",
        "macvlan-vepa",
        "macvlan-passthru",
    ],
)
def test_a_switched_cell_crosses_the_switch_and_leaves_the_nodes_clean(
    bed: dict[str, Any], tmp_path: Path, state_dir: Path, driver: str
):
    config = validate(raw(bed["inventory"], driver))
    cell = Cell("switched", driver, "tcp", 1500, 1, 1)
    before = _port_bytes()
    result = measure(cell, config, tmp_path / "cell.json")
    through_switch = _port_bytes() - before

    assert result["status"] == "ok", result["reason"]
    pair = result["pairs"][0]
    end = json.loads(pair["client_stdout"])["end"]
    received = end["sum_received"]["bytes"]
    assert received > 0
    # Every payload byte crossed the switch's ports, with its headers.
    assert through_switch > received
    # The switch's ports are shaped: the wire caps the rate.
    assert end["sum_received"]["bits_per_second"] < RATE_GBIT * 1e9 * 1.1
    assert (pair["server_node"], pair["client_node"]) == ("node1", "node2")
    assert result["nodes"]["server"]["provenance"]["iperf3_version"]
    assert result["nodes"]["client"]["data_address"] == "198.19.1.12/24"
    assert result["driver"]["server"]["name"] == driver
    if driver == "vxlan":
        assert result["driver"]["endpoint_mtu"] == 1450
        assert result["settings"]["mss"] == 1410
    on_disk = json.loads((tmp_path / "cell.json").read_text())
    assert on_disk["nodes"]["server"]["name"] == "node1"

    for i in (1, 2):
        names, mtu = _node_links(i)
        assert names == {"lo", testbed.DATA_IFNAME, testbed.MGMT_IFNAME}
        assert mtu == testbed.SWITCH_MTU
    assert not {pair["server_netns"], pair["client_netns"]} & np_namespaces()


def test_a_driver_not_done_across_nodes_is_skipped_with_a_reason(
    bed: dict[str, Any], tmp_path: Path, state_dir: Path
):
    config = validate(raw(bed["inventory"], "routed"))
    result = measure(
        Cell("switched", "routed", "tcp", 1500, 1, 1), config, tmp_path / "c.json"
    )
    assert result["status"] == "skipped"
    assert "not implemented for the switched topology" in result["reason"]

    # A driver's own rule still holds across nodes.
    config = validate(raw(bed["inventory"], "macvlan-passthru"))
    cell = Cell("switched", "macvlan-passthru", "tcp", 1500, 2, 1)
    result = measure(cell, config, tmp_path / "p.json")
    assert result["status"] == "skipped"
    assert "one sub-device per parent" in result["reason"]


def test_the_workflow_runs_a_switched_sweep_into_the_report(
    bed: dict[str, Any], tmp_path: Path
):
    root = make_project(tmp_path, raw(bed["inventory"]))
    snakemake(root)
    cell = json.loads(
        (
            root / "results/raw/switched/netns/veth-bridge/tcp/mtu1500/pairs1/rep1.json"
        ).read_text()
    )
    assert cell["status"] == "ok"
    assert "switched topology, TCP" in (root / "results/report.html").read_text()


def test_the_workflow_refuses_a_bad_node_before_measuring(
    bed: dict[str, Any], tmp_path: Path
):
    data = raw(bed["inventory"])
    nodes = yaml.safe_load(bed["inventory"].read_text())["nodes"]
    nodes[1]["data_interface"] = "npnothere"
    del data["inventory"]
    root = make_project(tmp_path, {**data, "nodes": nodes})
    done = subprocess.run(
        ["snakemake", "--cores", "1", "results/report.html"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "node node2:" in done.stdout + done.stderr
    assert not (root / "results").exists()


def test_the_readme_documents_the_testbed_commands():
    text = (REPO / "README.md").read_text()
    for command in (
        "netpipe testbed up",
        "snakemake --cores 1 results/report.html --configfile "
        "config/switched-testbed.yaml",
        "netpipe testbed down",
    ):
        assert command in text


def _in_node(i: int) -> set[str]:
    return _node_links(i)[0] - {"lo", testbed.DATA_IFNAME, testbed.MGMT_IFNAME}


@pytest.mark.parametrize("op", ["serve", "clients"])
def test_a_controller_that_vanishes_leaves_nothing_on_the_node(
    bed: dict[str, Any], state_dir: Path, op: str
):
    config = validate(raw(bed["inventory"]))
    cell = Cell("switched", "veth-bridge", "tcp", 1500, 1, 1)
    server, client = config.nodes
    node, role, other = (
        (server, "server", client) if op == "serve" else (client, "client", server)
    )
    plan = make_plan(cell, config, new_token())
    settings = cell_settings(cell, config)
    request = switched.half_request(cell, plan, settings, node, role, other, 10.0)
    conn = connect(node)
    try:
        session = Session(node, conn, op, request)
        assert session.read(60)["event"] == "ready"
        mine = {ep.netns for ep in plan.endpoints if ep.role == role}
        assert mine <= np_namespaces() and _in_node(1 if op == "serve" else 2)
    finally:
        # The controller dies: its connection drops without a word.
        conn.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (
        mine & np_namespaces() or _in_node(1 if op == "serve" else 2)
    ):
        time.sleep(0.1)
    assert not mine & np_namespaces()
    assert not _in_node(1 if op == "serve" else 2)


def test_ctrl_c_in_a_switched_cell_tears_down_both_nodes_before_it_exits(
    bed: dict[str, Any], tmp_path: Path, state_dir: Path
):
    data = raw(bed["inventory"])
    data["iperf"] = {"duration_s": 5, "omit_s": 0}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(data))
    out = tmp_path / "cell.json"
    argv = [str(Path(sys.executable).parent / "netpipe"), "measure"]
    argv += ["--config", str(config), "--topology", "switched"]
    argv += ["--driver", "veth-bridge", "--output", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (_in_node(1) and _in_node(2)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _in_node(1) and _in_node(2), "the cell never got going"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err.decode()[-2000:]
    assert not out.exists()
    # The controller waited for both halves' teardown before it exited.
    assert not _in_node(1) and not _in_node(2)


def test_nodes_with_different_iperf3_versions_are_a_warning(
    bed: dict[str, Any], tmp_path: Path
):
    fake = tmp_path / "iperf3"
    fake.write_text("#!/bin/sh\necho 'iperf 3.99 (cJSON 1.7.15)'\n")
    fake.chmod(0o755)
    report = check_nodes(with_nodes(bed, lambda n: n.update(iperf3=str(fake))))
    assert report["errors"] == []
    assert any(
        "iperf3 versions differ" in w and "node2 3.99" in w for w in report["warnings"]
    )


def test_a_switched_cell_with_an_unreachable_node_fails_naming_it(
    bed: dict[str, Any], tmp_path: Path, state_dir: Path
):
    config = with_nodes(bed, lambda n: n["ssh"].update(port=2222))
    cell = Cell("switched", "veth-bridge", "tcp", 1500, 1, 1)
    result = measure(cell, config, tmp_path / "cell.json")
    assert result["status"] == "failed" and result["error_class"] == "node"
    assert "node node2: cannot reach" in result["reason"]
    assert not _in_node(1) and not _in_node(2)
