"""The netpipe command as a user types it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, needs_root

SAMPLES = REPO / "tests" / "data" / "iperf"
FIELDS = {
    "file", "status", "error", "version", "protocol", "streams", "duration_s",
    "sent_bps", "received_bps", "retransmits", "cpu_host_pct", "cpu_remote_pct",
    "jitter_ms", "lost_packets", "packets", "lost_percent", "flags",
}  # fmt: skip


def netpipe(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    """Run the netpipe command."""
    return subprocess.run(
        [sys.executable, "-m", "netpipe.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kw,  # type: ignore[call-overload]
    )


def test_parse_prints_one_json_line_per_file_with_every_field() -> None:
    files = sorted(SAMPLES.glob("*.json"))
    done = netpipe("parse", *map(str, files))

    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["file"] for line in lines] == list(map(str, files))
    assert all(set(line) == FIELDS for line in lines)
    failed = [line for line in lines if line["status"] == "failed"]
    assert failed and all(line["error"] for line in failed)
    assert all(line["sent_bps"] is None for line in failed)
    assert done.returncode == 1  # some inputs are broken on purpose


def test_validate_rejects_a_bad_config_naming_key_and_value(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "matrix:\n  - {driver: [veth-bridge], protocol: [tcp], mtu: [70000], "
        "pairs: [1]}\n"
    )
    done = netpipe("validate", str(bad))

    assert done.returncode == 2
    assert "matrix[0].mtu[0]" in done.stderr and "70000" in done.stderr
    assert "65535" in done.stderr


def test_validate_counts_the_cells_of_the_default_config() -> None:
    done = netpipe("validate", str(REPO / "config" / "config.yaml"))

    assert done.returncode == 0
    assert "108 cells" in done.stdout


@pytest.mark.root
@needs_root
def test_doctor_lists_every_driver_with_a_verdict(state_dir: Path) -> None:
    from netpipe.drivers import known_drivers

    done = netpipe("doctor", "--json")

    report = json.loads(done.stdout)
    assert set(report["drivers"]) == set(known_drivers())
    assert report["drivers"]["veth-bridge"] is None
    assert report["is_root"] is True
    assert "3." in report["iperf3"]


@pytest.mark.root
@needs_root
def test_second_measurement_waits_for_the_testbed(
    tmp_path: Path, state_dir: Path
) -> None:
    from netpipe.lock import testbed_lock

    cmd = ["measure", "--config", str(REPO / "config" / "config.yaml")]
    cmd += ["--driver", "ipvlan-l3", "--output", str(tmp_path / "c.json")]
    with testbed_lock("a test holding the testbed"):
        waiting = subprocess.Popen(
            [sys.executable, "-m", "netpipe.cli", *cmd],
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.5)
        assert waiting.poll() is None, "the second measurement did not wait"
        assert not (tmp_path / "c.json").exists()
    _, err = waiting.communicate(timeout=60)

    assert waiting.returncode == 0
    assert "waiting for the testbed: it is busy with cell a test holding" in err
    assert (tmp_path / "c.json").exists()


@pytest.mark.root
@needs_root
def test_no_wait_refuses_a_busy_testbed_and_writes_nothing(
    tmp_path: Path, state_dir: Path
) -> None:
    from netpipe.lock import testbed_lock

    cmd = ["measure", "--config", str(REPO / "config" / "config.yaml"), "--no-wait"]
    cmd += ["--driver", "ipvlan-l3", "--output", str(tmp_path / "c.json")]
    with testbed_lock("a test holding the testbed"):
        done = subprocess.run(
            [sys.executable, "-m", "netpipe.cli", *cmd],
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert done.returncode == 2
    assert "busy with cell a test holding the testbed" in done.stderr
    assert "NETPIPE_NO_WAIT" in done.stderr
    assert not (tmp_path / "c.json").exists()


def test_no_wait_in_the_environment_refuses_in_process(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from netpipe.errors import NodeError
    from netpipe.lock import testbed_lock

    monkeypatch.setenv("NETPIPE_NO_WAIT", "1")
    with (
        testbed_lock("first", wait=True),
        pytest.raises(NodeError, match="busy with cell first"),
        testbed_lock("second"),
    ):
        pass
