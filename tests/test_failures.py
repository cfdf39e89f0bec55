"""Misbehaving iperf3, provoked for real: each becomes a failed cell with a class."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute

from netpipe.backends.netns import NetnsBackend, Process
from netpipe.config import validate
from netpipe.drivers import Plan, get_driver
from netpipe.errors import IperfFailure, MeasurementError
from netpipe.iperf.command import IperfOptions
from netpipe.iperf.failures import (
    CLASSES,
    Failure,
    check_binary,
    classify_message,
    judge_pair,
    judge_pairs,
    run_with_retries,
)
from netpipe.iperf.session import Outcome, run_pairs
from netpipe.matrix import Cell
from netpipe.naming import new_token
from netpipe.records import Record
from netpipe.runner import _failure, _teardown, make_plan, measure
from tests.conftest import needs_root

IPERF3 = shutil.which("iperf3") or "iperf3"


# What iperf3 (src/iperf_error.c) prints for each, as the client's JSON "error".
@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("the server is busy running a test. try again later", "server-busy"),
        ("unable to connect to server: Connection refused", "connection-refused"),
        (
            "unable to connect to server - server may have stopped running or use "
            "a different port, firewall issue, etc.: Connection refused",
            "connection-refused",
        ),
        ("control socket has closed unexpectedly", "control-closed"),
        (
            "unable to receive control message: Connection reset by peer",
            "control-closed",
        ),
        ("unable to receive results: Bad file descriptor", "control-closed"),
        (
            "unable to start listener for connections: Address already in use",
            "port-in-use",
        ),
        ("iperf3: unrecognized option '--get-server-output'", "iperf3-too-old"),
        ("something nobody has seen before", "iperf3-error"),
    ],
)
def test_iperf3_messages_get_their_class(message: str, expected: str) -> None:
    assert classify_message(message) == expected
    assert expected in CLASSES


@pytest.mark.parametrize(
    "stdout",
    ["", "   \n", '{"start": {"connected": [], "version": "iperf 3.12"', "garbage"],
    ids=["empty", "blank", "truncated", "not-json"],
)
def test_empty_or_truncated_json_is_bad_json(stdout: str) -> None:
    failure = judge_pair({"client_stdout": stdout, "server_stdout": None})

    assert failure is not None
    assert failure.error_class == "bad-json"


def test_a_finished_udp_run_that_delivered_nothing_is_a_failure_not_zero() -> None:
    # A 3.9-era document: no sum_received, the receiver's counts are in end.sum.
    doc = {
        "start": {"test_start": {"protocol": "UDP"}, "connected": [{}]},
        "intervals": [{"sum": {"bytes": 125000}}],
        "end": {"sum": {"bytes": 125000, "packets": 90, "lost_packets": 90}},
    }
    failure = judge_pair({"client_stdout": json.dumps(doc), "server_stdout": None})

    assert failure == Failure("udp-no-data", failure.message if failure else "")
    assert "125000 bytes" in failure.message


def test_a_pair_that_finished_is_not_blamed_when_another_hung() -> None:
    raw = Path(__file__).parent / "data" / "cells" / "raw"
    ok_pair = next(
        pair
        for path in sorted(raw.rglob("*.json"))
        for pair in json.loads(path.read_text())["pairs"]
        if judge_pair(pair) is None
    )
    hung = {"index": 1, "client_stdout": "", "server_stdout": None}

    failure = judge_pairs([ok_pair | {"index": 0}, hung], timed_out=True, limit_s=9)

    assert failure is not None and failure.error_class == "timeout"
    assert "pair 1: timeout" in failure.message
    assert "pair 0" not in failure.message
    assert "timed out after 9 s" in failure.message


def test_transient_failures_are_retried_with_backoff_and_logged() -> None:
    results = iter(["server-busy", "connection-refused", None])

    def attempt() -> str | None:
        return next(results)

    out, attempts = run_with_retries(
        attempt,
        lambda name: None if name is None else Failure(name, f"iperf3 said {name}"),
        retries=2,
        backoff_s=0.01,
        log_label="test",
    )

    assert out is None
    assert [a["error_class"] for a in attempts] == [
        "server-busy",
        "connection-refused",
        None,
    ]
    assert [a["status"] for a in attempts] == ["failed", "failed", "ok"]


def test_retries_stop_at_the_configured_count() -> None:
    calls = []

    def attempt() -> str:
        calls.append(1)
        return "server-busy"

    out, attempts = run_with_retries(
        attempt,
        lambda name: Failure(name, "busy"),
        retries=1,
        backoff_s=0,
        log_label="test",
    )

    assert out == "server-busy"
    assert len(calls) == len(attempts) == 2


def test_a_lasting_failure_is_not_retried() -> None:
    calls = []

    def attempt() -> str:
        calls.append(1)
        return "control-closed"

    _, attempts = run_with_retries(
        attempt,
        lambda name: Failure(name, "closed"),
        retries=3,
        backoff_s=0,
        log_label="test",
    )

    assert len(calls) == len(attempts) == 1


def test_a_server_that_cannot_start_is_retried_then_raised_with_its_class() -> None:
    def attempt() -> None:
        raise MeasurementError(
            "the iperf3 server on port 5201 exited with code 1 before listening: "
            "unable to start listener for connections: Address already in use"
        )

    attempts: list[dict[str, Any]] = []
    with pytest.raises(IperfFailure) as err:
        run_with_retries(
            attempt,
            lambda _: None,
            retries=2,
            backoff_s=0,
            log_label="test",
            attempts=attempts,
        )

    assert err.value.error_class == "port-in-use"
    assert [a["error_class"] for a in attempts] == ["port-in-use"] * 3
    assert "Address already in use" in str(err.value)


def test_a_missing_iperf3_is_iperf3_missing() -> None:
    with pytest.raises(IperfFailure) as err:
        check_binary("/nonexistent/iperf3")
    assert err.value.error_class == "iperf3-missing"
    assert "iperf.binary" in str(err.value)


def fake_iperf3(tmp_path: Path, body: str) -> str:
    """An executable standing in for iperf3; the real one is at REAL."""
    path = tmp_path / "iperf3"
    path.write_text(
        f"#!{sys.executable}\nimport os, subprocess, sys\nREAL = {IPERF3!r}\n{body}"
    )
    path.chmod(0o755)
    return str(path)


def test_an_iperf3_too_old_for_our_options_is_iperf3_too_old(tmp_path: Path) -> None:
    binary = fake_iperf3(tmp_path, 'print("iperf 3.0.11")\n')

    with pytest.raises(IperfFailure) as err:
        check_binary(binary)

    assert err.value.error_class == "iperf3-too-old"
    assert "3.0.11" in str(err.value)


# Real namespaces from here on.


def config(**iperf: Any) -> Any:
    matrix = [
        {"driver": ["veth-bridge"], "protocol": ["tcp"], "mtu": [1500], "pairs": [1]}
    ]
    settings = {"duration_s": 1, "omit_s": 0, "udp_rate": "100M", **iperf}
    return validate({"matrix": matrix, "iperf": settings})


@contextmanager
def provisioned(protocol: str, *, mtu: int = 1500, pairs: int = 1) -> Iterator[Any]:
    """A veth-bridge cell's endpoints, torn down (and checked) afterwards."""
    cell = Cell("local", "veth-bridge", protocol, mtu, pairs, 1)
    token = new_token()
    driver = get_driver("veth-bridge")
    plan = make_plan(cell, config(), token)
    driver.plan(plan)
    rec = Record(token=token, cell=cell.label())
    rec.netns = [ep.netns for ep in plan.endpoints]
    rec.links = list(plan.host_links)
    rec.save()
    backend = NetnsBackend()
    with IPRoute() as host:
        try:
            for ep in plan.endpoints:
                backend.create(ep.netns)
            driver.provision(host, backend, plan)
            yield host, backend, plan
        finally:
            left = _teardown(driver, host, backend, plan)
            assert not left, f"teardown left {left}"
            rec.discard()


def run(
    backend: NetnsBackend,
    plan: Plan,
    protocol: str,
    *,
    limit_s: float = 20,
    duration_s: int = 1,
    mss: int | None = None,
    on_clients: Any = None,
) -> Outcome:
    opts = IperfOptions(IPERF3, protocol, duration_s, 0, mss, "100M")
    spawned: list[list[Process]] = []

    def on_spawn(procs: list[Process]) -> None:
        spawned.append(procs)
        if len(spawned) == 2 and on_clients is not None:
            on_clients(servers=spawned[0], clients=procs)

    return run_pairs(
        backend, plan, opts, base_port=5201, limit_s=limit_s, on_spawn=on_spawn
    )


def nft(backend: NetnsBackend, netns: str, ruleset: str, tmp_path: Path) -> None:
    """Load an nftables ruleset inside one of the test's namespaces."""
    path = tmp_path / "rules.nft"
    path.write_text(ruleset)
    proc = backend.spawn(netns, [shutil.which("nft") or "nft", "-f", str(path)])
    try:
        assert proc.wait(timeout=10) == 0, proc.output()
    finally:
        proc.close()


def later(delay: float, pids: list[int], signum: int) -> None:
    threading.Timer(delay, lambda: [os.kill(pid, signum) for pid in pids]).start()


@pytest.mark.parametrize("retries", [1])
@pytest.mark.root
@needs_root
def test_a_second_client_to_a_busy_server_is_server_busy_and_retried(
    state_dir: Path, retries: int
) -> None:
    with provisioned("tcp", pairs=2) as (_, backend, plan):
        # Pair 1's client goes to pair 0's one-off server, already in a test.
        server0, client1 = plan.endpoints[0], plan.endpoints[3]
        client1.pair = 0
        client1.connect_to = str(server0.address.ip)
        outcome, attempts = run_with_retries(
            lambda: run(backend, plan, "tcp", duration_s=2),
            _failure,
            retries=retries,
            backoff_s=0.1,
            log_label="busy",
        )

    assert outcome.status == "failed"
    assert outcome.error_class == "server-busy"
    assert "the server is busy running a test" in (outcome.reason or "")
    assert [a["error_class"] for a in attempts] == ["server-busy"] * (retries + 1)


@pytest.mark.root
@needs_root
def test_a_port_nothing_listens_on_is_connection_refused(state_dir: Path) -> None:
    with provisioned("tcp", pairs=2) as (_, backend, plan):
        # Pair 1's client goes to pair 0's server host, on pair 1's port.
        plan.endpoints[3].connect_to = str(plan.endpoints[0].address.ip)
        outcome = run(backend, plan, "tcp")

    assert outcome.error_class == "connection-refused"
    assert "Connection refused" in (outcome.reason or "")


@pytest.mark.root
@needs_root
def test_a_server_killed_mid_test_is_control_closed(state_dir: Path) -> None:
    with provisioned("tcp") as (_, backend, plan):
        outcome = run(
            backend,
            plan,
            "tcp",
            duration_s=4,
            on_clients=lambda servers, clients: later(
                1.0, [p.pid for p in servers], signal.SIGKILL
            ),
        )

    assert outcome.status == "failed"
    assert outcome.error_class == "control-closed", outcome.reason


@pytest.mark.root
@needs_root
def test_udp_data_dropped_while_control_works_is_udp_no_data(
    state_dir: Path, tmp_path: Path
) -> None:
    with provisioned("udp") as (_, backend, plan):
        # The firewall passes iperf3's 4-byte UDP hello but drops the data.
        nft(
            backend,
            plan.endpoints[0].netns,
            "table inet npfault {\n chain input {\n  type filter hook input "
            "priority 0;\n  udp length > 100 drop\n }\n}\n",
            tmp_path,
        )
        outcome = run(backend, plan, "udp")

    assert outcome.status == "failed"
    assert outcome.error_class == "udp-no-data", outcome.reason
    assert "timed out" not in (outcome.reason or "")


@pytest.mark.root
@needs_root
def test_udp_blocked_entirely_is_udp_no_data_after_the_time_limit(
    state_dir: Path, tmp_path: Path
) -> None:
    with provisioned("udp") as (_, backend, plan):
        nft(
            backend,
            plan.endpoints[0].netns,
            "table inet npfault {\n chain input {\n  type filter hook input "
            "priority 0;\n  meta l4proto udp drop\n }\n}\n",
            tmp_path,
        )
        outcome = run(backend, plan, "udp", limit_s=3)

    assert outcome.error_class == "udp-no-data", outcome.reason
    assert "timed out" in (outcome.reason or "")


@pytest.mark.root
@needs_root
def test_an_mtu_mismatch_on_the_path_is_mtu_blackhole(state_dir: Path) -> None:
    with provisioned("tcp", mtu=9000) as (host, backend, plan):
        # The server's bridge port keeps 1500: the bridge drops jumbo frames
        # towards it, while the small control messages still pass.
        port = next(n for n in plan.host_links if n.endswith("vs0"))
        host.link("set", index=host.link_lookup(ifname=port)[0], mtu=1500)
        outcome = run(backend, plan, "tcp", limit_s=3, mss=8960)

    assert outcome.error_class == "mtu-blackhole", outcome.reason
    assert "timed out" in (outcome.reason or "")


@pytest.mark.root
@needs_root
def test_a_hanging_server_is_timed_out(state_dir: Path) -> None:
    with provisioned("tcp") as (_, backend, plan):
        outcome = run(
            backend,
            plan,
            "tcp",
            limit_s=3,
            on_clients=lambda servers, clients: later(
                0.3, [p.pid for p in servers], signal.SIGSTOP
            ),
        )

    assert outcome.error_class == "timeout", outcome.reason
    assert "timed out" in (outcome.reason or "")


def cell_with(binary: str, tmp_path: Path) -> dict[str, Any]:
    return measure(
        Cell("local", "veth-bridge", "tcp", 1500, 1, 1),
        config(binary=binary, retries=0),
        tmp_path / "c.json",
    )


@pytest.mark.root
@needs_root
def test_a_cut_short_json_fails_the_cell_as_bad_json(
    state_dir: Path, tmp_path: Path
) -> None:
    # A real client whose output is cut in half, as a crash mid-print leaves it.
    binary = fake_iperf3(
        tmp_path,
        'if "-c" not in sys.argv:\n    os.execv(REAL, [REAL, *sys.argv[1:]])\n'
        "out = subprocess.run([REAL, *sys.argv[1:]], capture_output=True).stdout\n"
        "sys.stdout.buffer.write(out[: len(out) // 2])\n",
    )
    result = cell_with(binary, tmp_path)

    assert result["status"] == "failed"
    assert result["error_class"] == "bad-json"
    assert "not valid JSON" in result["reason"]
    assert json.loads((tmp_path / "c.json").read_text())["error_class"] == "bad-json"


@pytest.mark.root
@needs_root
def test_a_cell_with_a_too_old_iperf3_fails_before_provisioning(
    state_dir: Path, tmp_path: Path
) -> None:
    result = cell_with(fake_iperf3(tmp_path, 'print("iperf 3.0.7")\n'), tmp_path)

    assert result["status"] == "failed"
    assert result["error_class"] == "iperf3-too-old"
    assert result["pairs"] == []


@pytest.mark.root
@needs_root
def test_a_cell_without_iperf3_is_iperf3_missing(
    state_dir: Path, tmp_path: Path
) -> None:
    result = cell_with("/nonexistent/iperf3", tmp_path)

    assert result["error_class"] == "iperf3-missing"


@pytest.mark.root
@needs_root
def test_a_cell_records_its_attempts(state_dir: Path, tmp_path: Path) -> None:
    # The first client run answers "busy"; the retry measures for real.
    binary = fake_iperf3(
        tmp_path,
        'flag = os.path.join(os.path.dirname(sys.argv[0]), "busy-once")\n'
        'if "-c" in sys.argv and not os.path.exists(flag):\n'
        '    open(flag, "w").close()\n'
        '    print(\'{"start": {"connected": []}, "intervals": [], "end": {},'
        ' "error": "the server is busy running a test. try again later"}\')\n'
        "    sys.exit(1)\n"
        "os.execv(REAL, [REAL, *sys.argv[1:]])\n",
    )
    result = measure(
        Cell("local", "veth-bridge", "tcp", 1500, 1, 1),
        config(binary=binary, retries=2, retry_backoff_s=0.1),
        tmp_path / "c.json",
    )

    assert result["status"] == "ok", result["reason"]
    assert [a["error_class"] for a in result["attempts"]] == ["server-busy", None]
    assert "busy" in result["attempts"][0]["message"]
