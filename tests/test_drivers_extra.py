"""Real cells with the host, routed and veth-nat drivers, and what they leave."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute

from netpipe.config import validate
from netpipe.drivers import get_driver
from netpipe.iperf import parse_text
from netpipe.matrix import Cell
from netpipe.naming import new_token
from netpipe.records import Record, cleanup
from netpipe.runner import make_plan, measure
from tests.conftest import needs_root, np_links, np_namespaces

pytestmark = [pytest.mark.root, needs_root]


def config() -> Any:
    """A short-running config for one-off cells."""
    matrix = [{"driver": ["routed"], "protocol": ["tcp"], "mtu": [1500], "pairs": [1]}]
    return validate(
        {"matrix": matrix, "iperf": {"duration_s": 1, "omit_s": 0, "udp_rate": "500M"}}
    )


def run_cell(driver: str, tmp_path: Path, mtu: int = 1500) -> dict[str, Any]:
    """Measure a 1-pair TCP cell and check what every driver must give."""
    result = measure(Cell("local", driver, "tcp", mtu, 1, 1), config(), tmp_path / "c")

    assert result["status"] == "ok", result["reason"]
    assert json.loads((tmp_path / "c").read_text())["driver"] == result["driver"]
    pair = result["pairs"][0]
    parsed = parse_text(pair["client_stdout"], server_text=pair["server_stdout"])
    assert parsed.received_bps is not None and parsed.received_bps > 0
    return result


def assert_token_gone(result: dict[str, Any], state_dir: Path) -> None:
    """Nothing named for the cell's run is left, nor its record."""
    token = result["pairs"][0]["server_netns"][2:6]
    assert not [n for n in np_links() | np_namespaces() if n.startswith(f"np{token}")]
    assert not list((state_dir / "records").glob("*.json"))


def root_routes_in_pool() -> list[str]:
    """Routes of the root namespace into the benchmarking range 198.18.0.0/15."""
    with IPRoute() as host:
        dsts = [r.get("RTA_DST") for r in host.route("dump", family=2)]
    return [d for d in dsts if d and d.startswith(("198.18.", "198.19."))]


def test_routed_cell_routes_each_endpoint_by_a_32_route(
    tmp_path: Path, state_dir: Path
) -> None:
    before = root_routes_in_pool()

    result = run_cell("routed", tmp_path)

    drv = result["driver"]
    router = drv["router_netns"]
    assert router.endswith("rt") and router.startswith("np")
    assert drv["encapsulation"] is None
    assert drv["neighbour_resolution"] == "proxy ARP on the router ends"
    pair = result["pairs"][0]
    for address in (pair["server_address"], pair["client_address"]):
        assert any(r.startswith(f"{address}/32 dev np") for r in drv["routes"])
    assert "bridge" not in drv
    assert router not in np_namespaces()
    assert root_routes_in_pool() == before
    assert_token_gone(result, state_dir)


def test_routed_plan_records_its_router_namespace() -> None:
    plan = make_plan(Cell("local", "routed", "tcp", 1500, 2, 1), config(), "ab12")

    get_driver("routed").plan(plan)

    assert plan.extra_netns == ["npab12rt"]
    assert plan.host_links == []


def test_veth_nat_client_dials_the_published_address_and_is_translated(
    tmp_path: Path, state_dir: Path
) -> None:
    result = run_cell("veth-nat", tmp_path)

    drv = result["driver"]
    published = drv["published_address"]
    pair = result["pairs"][0]
    assert published not in (pair["server_address"], pair["client_address"])
    cmd = pair["client_command"]
    assert cmd[cmd.index("-c") + 1] == published
    server = pair["server_command"]
    assert server[server.index("-B") + 1] == pair["server_address"]
    # The server was reached at its own address, from the translated source.
    connected = json.loads(pair["server_stdout"])["start"]["connected"][0]
    assert connected["local_host"] == pair["server_address"]
    assert connected["remote_host"] == published
    port = pair["port"]
    target = f"{pair['server_address']}:{port}"
    assert f"ip daddr {published} tcp dport {port} dnat to {target}" in drv["nat_rules"]
    assert drv["nat_table"].startswith("ip np")
    assert drv["router_netns"] not in np_namespaces()
    assert_token_gone(result, state_dir)


@pytest.mark.skipif(shutil.which("nft") is None, reason="needs nft")
def test_veth_nat_leaves_no_table_in_the_root_namespace(
    tmp_path: Path, state_dir: Path
) -> None:
    result = run_cell("veth-nat", tmp_path)

    table = result["driver"]["nat_table"].split()[1]
    listed = subprocess.run(
        [shutil.which("nft") or "nft", "list", "tables"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert table not in listed


def test_host_cell_runs_over_loopback_and_says_the_mtu_did_not_apply(
    tmp_path: Path, state_dir: Path
) -> None:
    lo_mtu = int(Path("/sys/class/net/lo/mtu").read_text())

    result = run_cell("host", tmp_path, mtu=9000)

    drv = result["driver"]
    assert drv["mtu_applied"] is False
    assert drv["path_mtu"] == lo_mtu
    assert int(Path("/sys/class/net/lo/mtu").read_text()) == lo_mtu
    pair = result["pairs"][0]
    client, server = pair["client_command"], pair["server_command"]
    assert client[client.index("-c") + 1] == "127.0.0.1"
    assert server[server.index("-B") + 1] == "127.0.0.1"
    # The MSS still follows the cell's MTU, on loopback too.
    assert client[client.index("-M") + 1] == "8960"
    connected = json.loads(pair["server_stdout"])["start"]["connected"][0]
    assert connected["remote_host"] == "127.0.0.1"
    assert_token_gone(result, state_dir)


def test_host_plan_runs_iperf3_in_the_starting_namespace_over_loopback() -> None:
    plan = make_plan(Cell("local", "host", "tcp", 1500, 1, 1), config(), new_token())

    get_driver("host").plan(plan)

    assert plan.host_network is True
    assert plan.host_links == []
    assert [ep.listen_on or ep.connect_to for ep in plan.endpoints] == [
        "127.0.0.1",
        "127.0.0.1",
    ]


CHILD = """
import sys
from netpipe.config import validate
from netpipe.matrix import Cell
from netpipe.runner import measure
m = [{"driver": [sys.argv[1]], "protocol": ["tcp"], "mtu": [1500], "pairs": [1]}]
c = validate({"matrix": m, "iperf": {"duration_s": 30, "omit_s": 0}})
measure(Cell("local", sys.argv[1], "tcp", 1500, 1, 1), c, sys.argv[2])
"""


@pytest.mark.parametrize("driver", ["routed", "veth-nat"])
def test_killed_cell_leaves_its_router_namespace_to_cleanup(
    driver: str, tmp_path: Path, state_dir: Path
) -> None:
    argv = [sys.executable, "-c", CHILD, driver, str(tmp_path / "c.json")]
    child = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        router = None
        while time.monotonic() < deadline and router is None:
            for path in (state_dir / "records").glob("*.json"):
                try:
                    rec = Record.load(path)
                except (OSError, ValueError):
                    continue
                routers = [n for n in rec.netns if n.endswith("rt")]
                # Wait until iperf3 runs, so the whole data path exists.
                if routers and rec.processes and routers[0] in np_namespaces():
                    router = routers[0]
            time.sleep(0.05)
        assert router is not None, "the cell never provisioned its router"
    finally:
        child.kill()
        child.wait(timeout=10)
    assert router in np_namespaces(), "a SIGKILL leaves the router for cleanup"

    removed = cleanup()

    assert router in removed[0]["netns"]
    assert router not in np_namespaces()
    assert not (tmp_path / "c.json").exists()
