"""The docker backend: real containers on a real engine, real iperf3 inside.

These run where a Docker engine answers at DOCKER_HOST (tests/with-dockerd
starts a private one, and there they fail rather than skip without it).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from netpipe.backends import docker as docker_backend
from netpipe.backends.image import image_files, rootfs_tar
from netpipe.config import validate
from netpipe.iperf import parse_text
from netpipe.matrix import Cell
from netpipe.records import cleanup
from netpipe.runner import measure
from tests.conftest import (
    docker_client,
    needs_docker,
    needs_root,
    np_containers,
    np_links,
    np_namespaces,
)

pytestmark = [pytest.mark.root, needs_root, needs_docker]


def config(**docker: object) -> Any:
    """A short-running config whose cells may use the docker backend."""
    matrix = [
        {
            "backend": ["netns", "docker"],
            "driver": ["veth-bridge", "macvlan-bridge", "host"],
            "protocol": ["tcp", "udp"],
            "mtu": [1500, 9000],
            "pairs": [2],
        }
    ]
    iperf = {"duration_s": 1, "omit_s": 0, "udp_rate": "500M"}
    return validate({"matrix": matrix, "iperf": iperf, "docker": docker})


@pytest.fixture(scope="module")
def engine() -> Any:
    client = docker_client()
    assert client is not None, "no Docker engine answers at DOCKER_HOST"
    yield client
    client.close()


def in_container(engine: Any, pid: int) -> bool:
    """Whether ``pid`` runs in a mount namespace other than this process's."""
    return os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")


@pytest.mark.parametrize("driver", ["veth-bridge", "macvlan-bridge"])
@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_traffic_flows_between_containers_and_nothing_is_left(
    driver: str, protocol: str, tmp_path: Path, state_dir: Path, engine: Any
) -> None:
    out = tmp_path / "cell.json"
    cell = Cell("local", driver, protocol, 9000, 2, 1, "docker")

    result = measure(cell, config(), out)

    assert result["status"] == "ok", result["reason"]
    assert json.loads(out.read_text())["cell"]["backend"] == "docker"
    backend = result["backend"]
    assert backend["name"] == "docker"
    assert backend["image"].startswith("netpipe-iperf3:host-")
    assert backend["image_id"].startswith("sha256:")
    assert backend["engine_version"]
    assert backend["iperf3_in_image"].startswith("iperf 3.")
    for pair in result["pairs"]:
        parsed = parse_text(pair["client_stdout"], server_text=pair["server_stdout"])
        assert parsed.status == "ok", parsed.error
        assert parsed.received_bps is not None and parsed.received_bps > 1e6
    # Two clients started together, through the engine.
    starts = [p["client_start"] for p in result["pairs"]]
    assert None not in starts and max(starts) - min(starts) < 0.5
    token = result["pairs"][0]["server_netns"][2:6]
    assert not [c for c in np_containers() if token in c]
    assert not [n for n in np_namespaces() if token in n]
    assert not [n for n in np_links() if token in n]


def test_iperf3_runs_inside_the_container(
    tmp_path: Path, state_dir: Path, engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Catch the exec's PID while it runs: its mount namespace is the
    # container's, not this machine's, and its network namespace is the
    # endpoint's.
    seen: list[tuple[bool, str, str]] = []
    original = docker_backend.DockerProcess._run

    def watch(self: docker_backend.DockerProcess) -> None:
        def look() -> None:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and not self.pid:
                time.sleep(0.01)
            if self.pid:
                seen.append(
                    (
                        in_container(engine, self.pid),
                        os.readlink(f"/proc/{self.pid}/ns/net"),
                        os.readlink(f"/proc/{self.ns_pid}/ns/net"),
                    )
                )

        import threading

        watcher = threading.Thread(target=look)
        watcher.start()
        original(self)
        watcher.join()

    monkeypatch.setattr(docker_backend.DockerProcess, "_run", watch)
    cell = Cell("local", "veth-bridge", "tcp", 1500, 1, 1, "docker")
    result = measure(cell, config(), tmp_path / "cell.json")

    assert result["status"] == "ok", result["reason"]
    assert len(seen) == 2  # the server and the client
    for other_mounts, net, container_net in seen:
        assert other_mounts
        assert net == container_net


def test_host_driver_runs_in_containers_on_the_host_network(
    tmp_path: Path, state_dir: Path, engine: Any
) -> None:
    cell = Cell("local", "host", "tcp", 1500, 2, 1, "docker")

    result = measure(cell, config(), tmp_path / "cell.json")

    assert result["status"] == "ok", result["reason"]
    assert result["driver"]["mtu_applied"] is False


def test_no_engine_skips_the_cell_with_what_to_do(
    tmp_path: Path, state_dir: Path
) -> None:
    cell = Cell("local", "veth-bridge", "tcp", 1500, 1, 1, "docker")
    url = f"unix://{tmp_path}/no-such.sock"

    started = time.monotonic()
    result = measure(cell, config(url=url), tmp_path / "cell.json")

    assert time.monotonic() - started < 10
    assert result["status"] == "skipped"
    assert url in result["reason"]
    assert "docker.url" in result["reason"] and "DOCKER_HOST" in result["reason"]


def test_a_missing_image_fails_the_cell_naming_the_key(
    tmp_path: Path, state_dir: Path, engine: Any
) -> None:
    cell = Cell("local", "veth-bridge", "tcp", 1500, 1, 1, "docker")

    started = time.monotonic()
    result = measure(cell, config(image="npmissing:none"), tmp_path / "cell.json")

    assert time.monotonic() - started < 60
    assert result["status"] == "failed"
    assert "docker.image" in result["reason"] and "npmissing:none" in result["reason"]
    assert "docker build" in result["reason"] and "workflow/docker" in result["reason"]


@pytest.fixture
def image_without_iperf3(engine: Any) -> Any:
    """An image holding only `sleep` and its libraries."""
    files = [f for f in image_files(_iperf3()) if "iperf" not in f]
    tag = "netpipe-test-noiperf:1"
    engine.api.import_image_from_data(
        rootfs_tar(files), repository=tag.split(":")[0], tag="1"
    )
    yield tag
    engine.images.remove(tag, force=True)


def _iperf3() -> str:
    import shutil

    found = shutil.which("iperf3")
    assert found
    return os.path.realpath(found)


def test_an_image_without_iperf3_fails_the_cell_with_the_remedy(
    tmp_path: Path, state_dir: Path, image_without_iperf3: str
) -> None:
    cell = Cell("local", "veth-bridge", "tcp", 1500, 1, 1, "docker")

    result = measure(cell, config(image=image_without_iperf3), tmp_path / "c.json")

    assert result["status"] == "failed"
    assert image_without_iperf3 in result["reason"]
    assert "no working iperf3" in result["reason"]
    assert "docker.image: auto" in result["reason"]


def test_the_host_image_holds_iperf3_its_libraries_and_tmp() -> None:
    files = image_files(_iperf3())
    with tarfile.open(fileobj=io.BytesIO(rootfs_tar(files))) as tar:
        names = tar.getnames()

    assert _iperf3().lstrip("/") in names
    assert any("libiperf" in n for n in names)
    assert any(n.endswith("sleep") for n in names)
    assert "tmp" in names


def start_docker_cell(
    tmp_path: Path, driver: str, protocol: str
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """Start `netpipe measure` of a 30-s, 2-pair docker cell; wait for its run.

    Returns the process, its stderr log and its result file once all four
    containers exist and iperf3 has been running for a moment.
    """
    cfg = tmp_path / "config.yaml"
    matrix = {"driver": [driver], "protocol": [protocol], "mtu": [1500], "pairs": [2]}
    iperf = {"duration_s": 30, "omit_s": 0, "udp_rate": "100M"}
    cfg.write_text(json.dumps({"matrix": [matrix], "iperf": iperf}))
    out = tmp_path / "cell.json"
    argv = [sys.executable, "-m", "netpipe.cli", "measure", "--config", str(cfg)]
    argv += ["--backend", "docker", "--driver", driver, "--pairs", "2"]
    argv += ["--protocol", protocol, "--output", str(out)]
    before = np_containers()
    log = tmp_path / "measure.log"
    with log.open("w") as stderr:
        runner = subprocess.Popen(argv, stderr=stderr)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(np_containers() - before) < 4:
        time.sleep(0.1)
    time.sleep(1.5)  # into the iperf3 run
    return runner, log, out


def test_cleanup_removes_labelled_containers_of_dead_runs_and_no_others(
    tmp_path: Path, state_dir: Path, engine: Any
) -> None:
    # A cell killed outright leaves its containers; its record names them.
    before = np_containers()
    runner, log, _ = start_docker_cell(tmp_path, "veth-bridge", "tcp")
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    left = np_containers() - before
    assert len(left) == 4, log.read_text()

    # A labelled container no record claims (its run's record is gone), and
    # an np-named container without netpipe's label.
    image = next(iter(engine.containers.get(sorted(left)[0]).image.tags))
    stray = engine.containers.run(
        image,
        ["sleep", "infinity"],
        name="npstraylabelled",
        labels={docker_backend.LABEL: "dead"},
        network_mode="none",
        detach=True,
    )
    foreign = engine.containers.run(
        image, ["sleep", "infinity"], name="npforeign", network_mode="none", detach=True
    )
    try:
        report = cleanup(containers=True)

        removed = {name for item in report for name in item.get("containers", [])}
        assert removed == left | {"npstraylabelled"}
        assert not np_containers() - before
        assert engine.containers.get("npforeign").status == "running"
        assert not [n for n in np_namespaces() if any(c in n for c in left)]
        with pytest.raises(docker.errors.NotFound):
            stray.reload()
    finally:
        foreign.remove(force=True)


def test_doctor_names_the_engine_and_the_image_cells_would_use(
    tmp_path: Path, engine: Any
) -> None:
    run = [sys.executable, "-m", "netpipe.cli", "doctor"]
    done = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"docker: engine {engine.version()['Version']} at" in done.stdout
    assert "image: netpipe-iperf3:host-" in done.stdout

    # No engine at the configured address: the reason, and what to do.
    cfg = tmp_path / "config.yaml"
    url = f"unix://{tmp_path}/none.sock"
    cfg.write_text(
        json.dumps(
            {
                "matrix": [
                    {
                        "driver": ["veth-bridge"],
                        "protocol": ["tcp"],
                        "mtu": [1500],
                        "pairs": [1],
                    }
                ],
                "docker": {"url": url, "image": "npmine:1"},
            }
        )
    )
    done = subprocess.run(
        [*run, "--config", str(cfg), "--json"], capture_output=True, text=True
    )
    report = json.loads(done.stdout)["docker"]
    assert report["reachable"] is False
    assert url in report["reason"] and "docker.url" in report["reason"]
    assert report["image"] == "npmine:1"


def test_an_engine_that_never_answers_fails_the_cell_instead_of_hanging(
    tmp_path: Path, state_dir: Path
) -> None:
    import socket

    path = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX) as silent:
        silent.bind(str(path))
        silent.listen(8)  # accepts connections, never says a word
        cell = Cell("local", "veth-bridge", "tcp", 1500, 1, 1, "docker")

        started = time.monotonic()
        result = measure(cell, config(url=f"unix://{path}"), tmp_path / "c.json")

    assert time.monotonic() - started < 30
    # Failed, not skipped: the next run measures it again.
    assert result["status"] == "failed"
    assert str(path) in result["reason"] and "did not answer" in result["reason"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_docker_cell_removes_its_containers(
    sig: signal.Signals, tmp_path: Path, state_dir: Path, engine: Any
) -> None:
    before = np_containers()
    runner, log, out = start_docker_cell(tmp_path, "macvlan-bridge", "udp")
    runner.send_signal(sig)
    code = runner.wait(timeout=60)

    assert code == 130, log.read_text()
    assert not out.exists()
    assert not np_containers() - before
    assert "interrupted" in log.read_text()


def engine_pid() -> int:
    """The PID of the dockerd at DOCKER_HOST, from the pid file beside its socket.

    tests/with-dockerd keeps its socket and pid file in one folder.
    """
    folder = Path(os.environ["DOCKER_HOST"].removeprefix("unix://")).parent
    return int((folder / "dockerd.pid").read_text())


def test_an_engine_that_stalls_mid_cell_fails_it_within_its_timeout(
    tmp_path: Path, state_dir: Path, engine: Any
) -> None:
    pid = engine_pid()
    before = np_containers()
    cfg = tmp_path / "config.yaml"
    matrix = {"driver": ["veth-bridge"], "protocol": ["tcp"], "mtu": [1500]}
    cfg.write_text(
        json.dumps(
            {
                "matrix": [{**matrix, "pairs": [2]}],
                "iperf": {"duration_s": 3, "omit_s": 0, "retries": 0},
                "docker": {"timeout_s": 3},
            }
        )
    )
    argv = [sys.executable, "-m", "netpipe.cli", "measure", "--config", str(cfg)]
    argv += ["--backend", "docker", "--driver", "veth-bridge", "--pairs", "2"]
    argv += ["--output", str(tmp_path / "cell.json")]
    log = tmp_path / "measure.log"
    with log.open("w") as stderr:
        runner = subprocess.Popen(argv, stderr=stderr)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(np_containers() - before) < 4:
            time.sleep(0.1)
        time.sleep(1)  # the clients run
        os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        code = runner.wait(timeout=90)
        took = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
        if runner.poll() is None:
            runner.kill()
            runner.wait()

    result = json.loads((tmp_path / "cell.json").read_text())
    assert code == 1, log.read_text()
    assert result["status"] == "failed"
    # Bounded by the time limit and a few engine timeouts, not by the engine.
    assert took < 60, log.read_text()
    # Whatever the stalled engine kept, the record names, and cleanup removes.
    cleanup(containers=True)
    assert not np_containers() - before
