"""Real cells: namespaces, drivers and iperf3, measured and torn down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from netpipe.config import validate
from netpipe.drivers import known_drivers
from netpipe.iperf import parse_text
from netpipe.matrix import Cell
from netpipe.naming import new_token
from netpipe.records import Record, cleanup
from netpipe.runner import measure
from tests.conftest import needs_root, np_links, np_namespaces

pytestmark = [pytest.mark.root, needs_root]


def config(**iperf: object) -> object:
    """A short-running config for one-off cells."""
    settings = {"duration_s": 1, "omit_s": 0, "udp_rate": "500M", **iperf}
    matrix = [
        {"driver": ["veth-bridge"], "protocol": ["tcp"], "mtu": [1500], "pairs": [4]}
    ]
    return validate({"matrix": matrix, "iperf": settings})


def available(name: str) -> bool:
    """Whether this machine can run driver ``name``."""
    token = new_token()
    with IPRoute() as host:
        return (
            known_drivers()[name]().unavailable_reason(host, None, f"np{token}pr")
            is None
        )


# Drivers that cannot carry a pair on one node (macvlan's private, VEPA and
# passthru modes) are skipped before any probe; the rest are probed.
INAPPLICABLE = [
    name
    for name, cls in sorted(known_drivers().items())
    if cls().inapplicable_reason("local", 1) is not None
]
RUNNABLE = [
    name
    for name in sorted(known_drivers())
    if name not in INAPPLICABLE and available(name)
]
UNAVAILABLE = [
    name for name in sorted(known_drivers()) if name not in RUNNABLE + INAPPLICABLE
]


@pytest.mark.parametrize("driver", RUNNABLE)
@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_traffic_flows_at_jumbo_mtu(
    driver: str, protocol: str, tmp_path: Path, state_dir: Path
) -> None:
    out = tmp_path / "cell.json"
    result = measure(Cell("local", driver, protocol, 9000, 1, 1), config(), out)

    assert result["status"] == "ok", result["reason"]
    assert json.loads(out.read_text())["status"] == "ok"
    assert result["driver"]["name"] == driver
    assert result["driver"]["mtu"] == 9000
    pair = result["pairs"][0]
    parsed = parse_text(pair["client_stdout"], server_text=pair["server_stdout"])
    assert parsed.status == "ok"
    assert parsed.received_bps is not None and parsed.received_bps > 1e6
    if protocol == "tcp":
        # MTU - 40 of the endpoints, which an overlay keeps below the cell's.
        mss = str(result["driver"]["endpoint_mtu"] - 40)
        assert "-M" in pair["client_command"]
        assert pair["client_command"][pair["client_command"].index("-M") + 1] == mss
    # The server saw the data on its own side too, within its own namespace.
    assert json.loads(pair["server_stdout"])["end"]


@pytest.mark.parametrize("driver", RUNNABLE)
def test_mtu_took_on_every_device(driver: str, tmp_path: Path, state_dir: Path) -> None:
    from netpipe.backends.netns import NetnsBackend
    from netpipe.drivers import get_driver
    from netpipe.runner import _teardown, make_plan

    drv = get_driver(driver)
    plan = make_plan(Cell("local", driver, "tcp", 4000, 2, 1), config(), new_token())
    drv.plan(plan)
    backend = NetnsBackend()
    with IPRoute() as host:
        try:
            for name in [ep.netns for ep in plan.endpoints] + plan.extra_netns:
                backend.create(name)
            drv.provision(host, backend, plan)
            assert plan.endpoint_mtu <= 4000
            for ep in plan.endpoints:
                with IPRoute(netns=ep.netns) as inside:
                    link = inside.link("get", ifname=ep.ifname)[0]
                    assert link.get("mtu") == plan.endpoint_mtu
                    addrs = [a.get("address") for a in inside.addr("dump")]
                    assert str(ep.address.ip) in addrs
            for name in plan.host_links:
                assert host.link("get", ifname=name)[0].get("mtu") == 4000
        finally:
            _teardown(drv, host, backend, plan)
    assert not any(
        n.startswith(f"np{plan.token}") for n in np_links() | np_namespaces()
    )


@pytest.mark.parametrize("driver", UNAVAILABLE)
def test_unavailable_driver_is_skipped_with_reason(
    driver: str, tmp_path: Path, state_dir: Path
) -> None:
    result = measure(
        Cell("local", driver, "tcp", 1500, 1, 1), config(), tmp_path / "c.json"
    )

    assert result["status"] == "skipped"
    assert result["reason"] and "CONFIG_" in result["reason"]
    assert result["pairs"] == []


@pytest.mark.parametrize("driver", INAPPLICABLE)
def test_driver_that_cannot_join_a_local_pair_is_skipped_with_reason(
    driver: str, tmp_path: Path, state_dir: Path
) -> None:
    result = measure(
        Cell("local", driver, "tcp", 1500, 1, 1), config(), tmp_path / "c.json"
    )

    assert result["status"] == "skipped"
    assert result["reason"] and "one node" in result["reason"]
    assert result["pairs"] == []
    assert not list((state_dir / "records").glob("*.json"))


def test_clients_start_together(tmp_path: Path, state_dir: Path) -> None:
    result = measure(
        Cell("local", "veth-bridge", "tcp", 1500, 4, 1), config(), tmp_path / "c.json"
    )

    assert result["status"] == "ok", result["reason"]
    starts = [p["client_start"] for p in result["pairs"]]
    assert len(starts) == 4 and all(starts)
    assert max(starts) - min(starts) < 0.05
    assert len({p["port"] for p in result["pairs"]}) == 4


def test_missing_iperf3_fails_the_cell_with_a_reason(
    tmp_path: Path, state_dir: Path
) -> None:
    result = measure(
        Cell("local", "veth-bridge", "tcp", 1500, 1, 1),
        config(binary="/nonexistent/iperf3"),
        tmp_path / "c.json",
    )

    assert result["status"] == "failed"
    assert "iperf.binary" in result["reason"]
    assert result["pairs"] == []


CHILD = """
import logging, sys
logging.basicConfig(level=logging.INFO)
from netpipe.config import validate
from netpipe.matrix import Cell
from netpipe.runner import measure
m = [{"driver": ["veth-bridge"], "protocol": ["tcp"], "mtu": [1500], "pairs": [2]}]
c = validate({"matrix": m, "iperf": {"duration_s": int(sys.argv[1]), "omit_s": 0}})
measure(Cell("local", "veth-bridge", "tcp", 1500, 2, 1), c, sys.argv[2])
"""


def _run_cell_in_child(tmp_path: Path, duration: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-c", CHILD, str(duration), str(tmp_path / "c.json")]
    return subprocess.Popen(argv, stderr=subprocess.PIPE)


def _wait_for_namespaces(state_dir: Path, timeout: float = 10) -> set[str]:
    """Wait until the child's cell has created the namespaces its record lists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in (state_dir / "records").glob("*.json"):
            try:
                planned = set(json.loads(path.read_text())["netns"])
            except (OSError, ValueError):
                continue
            made = planned & np_namespaces()
            if len(made) >= 4:  # two pairs' endpoints; the probe never lingers
                return made
        time.sleep(0.05)
    raise AssertionError("the cell never provisioned its namespaces")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_cell_removes_everything(
    signum: int, tmp_path: Path, state_dir: Path
) -> None:
    child = _run_cell_in_child(tmp_path, duration=30)
    made = _wait_for_namespaces(state_dir)
    time.sleep(0.5)  # let iperf3 start

    child.send_signal(signum)
    _, err = child.communicate(timeout=20)

    assert child.returncode != 0
    assert b"torn down" in err
    assert not (tmp_path / "c.json").exists()
    assert not made & np_namespaces()
    assert not list((state_dir / "records").glob("*.json"))


def test_killed_cell_is_cleaned_up_from_its_record(
    tmp_path: Path, state_dir: Path
) -> None:
    child = _run_cell_in_child(tmp_path, duration=30)
    made = _wait_for_namespaces(state_dir)
    planned = Record.load(next((state_dir / "records").glob("*.json")))
    time.sleep(0.5)

    child.kill()
    child.communicate(timeout=10)
    assert made <= np_namespaces(), "a SIGKILL leaves the namespaces for cleanup"

    removed = cleanup()

    assert set(removed[0]["netns"]) == made
    assert not made & np_namespaces()
    deadline = time.monotonic() + 10
    while set(planned.links) & np_links() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(planned.links) & np_links()
    assert not (tmp_path / "c.json").exists()


def test_cleanup_leaves_alone_what_netpipe_did_not_make(state_dir: Path) -> None:
    from netpipe.backends.netns import NetnsBackend

    token = new_token()
    backend = NetnsBackend()
    foreign = f"np{token}s0"
    try:
        backend.create(foreign)
        with IPRoute() as host:
            host.link("add", ifname=f"np{token}br", kind="bridge")
        # A record of a dead run that made something else entirely.
        dead = Record(token="npdead", cell="x", owner_pid=2**22 + 1)  # noqa: S106
        dead.netns = ["npdeads0"]
        dead.save()

        cleanup()

        assert foreign in np_namespaces()
        assert f"np{token}br" in np_links()
    finally:
        backend.remove(foreign)
        backend.close()
        with IPRoute() as host:
            host.link("del", ifname=f"np{token}br")


def test_no_records_are_left_after_a_cell(tmp_path: Path, state_dir: Path) -> None:
    measure(
        Cell("local", "veth-bridge", "udp", 1500, 1, 1), config(), tmp_path / "c.json"
    )

    assert not list((state_dir / "records").glob("*.json"))
    assert os.path.exists(state_dir / "testbed.lock")
