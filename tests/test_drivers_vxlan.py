"""vxlan cells: real traffic through a VXLAN tunnel between two node namespaces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute

from netpipe import runner
from netpipe.backends.netns import NetnsBackend
from netpipe.drivers import Driver, Plan
from netpipe.drivers.base import link_mtu
from netpipe.drivers.vxlan import OVERHEAD
from netpipe.iperf import parse_text
from netpipe.matrix import Cell
from netpipe.runner import measure
from tests.conftest import needs_root, np_links, np_namespaces
from tests.test_cells import config

pytestmark = [pytest.mark.root, needs_root]


def _stats(sock: IPRoute, ifname: str) -> dict[str, int]:
    return dict(sock.link("get", ifname=ifname)[0].get("IFLA_STATS64"))


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the cell's devices showed just before teardown removed them."""
    found: dict[str, Any] = {}
    original = runner._teardown

    def look_then_teardown(
        driver: Driver, host: IPRoute, backend: NetnsBackend, plan: Plan
    ) -> set[str]:
        server_node, client_node = plan.extra_netns
        found["nodes"] = list(plan.extra_netns)
        found["tunnel"] = {
            side: _stats(backend.sockets[node], f"np{plan.token}vx{side}")
            for side, node in (("s", server_node), ("c", client_node))
        }
        found["underlay_tx"] = _stats(
            backend.sockets[client_node], f"np{plan.token}ulc"
        )["tx_bytes"]
        found["endpoint_mtus"] = [
            link_mtu(backend.sockets[ep.netns], ep.ifname) for ep in plan.endpoints
        ]
        return original(driver, host, backend, plan)

    monkeypatch.setattr(runner, "_teardown", look_then_teardown)
    return found


def _bytes_received(pair: dict[str, Any]) -> int:
    """Payload bytes the server took in, as the client's summary reports them."""
    return int(json.loads(pair["client_stdout"])["end"]["sum_received"]["bytes"])


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_traffic_crosses_the_tunnel_at_the_reduced_mtu(
    protocol: str, seen: dict[str, Any], tmp_path: Path, state_dir: Path
) -> None:
    result = measure(
        Cell("local", "vxlan", protocol, 1500, 1, 1), config(), tmp_path / "c.json"
    )

    assert result["status"] == "ok", result["reason"]
    pair = result["pairs"][0]
    parsed = parse_text(pair["client_stdout"], server_text=pair["server_stdout"])
    assert parsed.received_bps is not None and parsed.received_bps > 0
    received = _bytes_received(pair)
    assert received > 0
    # The client's data went out of its node's VXLAN device, encapsulated on
    # the underlay, which carried more than the payload.
    assert seen["tunnel"]["c"]["tx_bytes"] >= received
    assert seen["tunnel"]["s"]["rx_bytes"] >= received
    assert seen["underlay_tx"] > seen["tunnel"]["c"]["tx_bytes"]

    assert result["driver"]["mtu"] == 1500
    assert result["driver"]["endpoint_mtu"] == 1500 - OVERHEAD
    assert seen["endpoint_mtus"] == [1500 - OVERHEAD] * 2
    if protocol == "tcp":
        command = pair["client_command"]
        assert command[command.index("-M") + 1] == str(1500 - OVERHEAD - 40)
    assert result["driver"]["vni"] == 256 and result["driver"]["udp_port"] == 4789


def test_teardown_removes_the_node_namespaces(
    seen: dict[str, Any], tmp_path: Path, state_dir: Path
) -> None:
    result = measure(
        Cell("local", "vxlan", "udp", 9000, 1, 1), config(), tmp_path / "c.json"
    )

    assert result["status"] == "ok", result["reason"]
    assert result["driver"]["endpoint_mtu"] == 9000 - OVERHEAD
    assert result["driver"]["node_netns"] == seen["nodes"]
    assert not set(seen["nodes"]) & np_namespaces()
    token = seen["nodes"][0][2:6]
    assert not any(n.startswith(f"np{token}") for n in np_links() | np_namespaces())
    assert not list((state_dir / "records").glob("*.json"))


def test_too_small_an_mtu_fails_before_anything_is_made(
    tmp_path: Path, state_dir: Path
) -> None:
    result = measure(
        Cell("local", "vxlan", "udp", 100, 1, 1), config(), tmp_path / "c.json"
    )

    assert result["status"] == "failed"
    assert "MTU 100" in result["reason"] and "118" in result["reason"]
    assert not list((state_dir / "records").glob("*.json"))
