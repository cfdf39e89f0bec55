"""The Snakemake workflow end to end, as a user runs it, in a temporary folder."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.conftest import (
    REPO,
    needs_docker,
    needs_root,
    new_state_dir,
    np_namespaces,
)

pytestmark = [pytest.mark.root, pytest.mark.workflow, needs_root]

TINY = {
    "matrix": [
        {
            "topology": ["local"],
            "driver": ["veth-bridge", "macvlan-bridge", "ipvlan-l3"],
            "protocol": ["tcp", "udp"],
            "mtu": [1500],
            "pairs": [1],
        }
    ],
    "repetitions": 1,
    "iperf": {"duration_s": 1, "omit_s": 0, "udp_rate": "500M"},
}
COMMAND = ["snakemake", "--cores", "1", "results/report.html"]


def make_project(root: Path, config: dict[str, object] = TINY) -> Path:
    """Copy the workflow into ``root`` with ``config`` as config/config.yaml."""
    shutil.copy(REPO / "Snakefile", root / "Snakefile")
    shutil.copytree(REPO / "workflow", root / "workflow", symlinks=False)
    shutil.copytree(REPO / "profiles", root / "profiles")
    (root / "config").mkdir()
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return root


def snakemake(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run the README's command in ``root``; fail the test if it fails."""
    done = subprocess.run(
        [*COMMAND, *extra],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        env=project_env(root),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def project_env(root: Path) -> dict[str, str]:
    """The environment of a project's runs: its own testbed lock and records."""
    state = root / ".state-dir"
    if not state.exists():
        state.write_text(str(new_state_dir()))
    return {**os.environ, "NETPIPE_STATE_DIR": state.read_text()}


def measured(done: subprocess.CompletedProcess[str]) -> list[str]:
    """The cell files a Snakemake run measured, from its log."""
    text = done.stdout + done.stderr
    return re.findall(r"output: (results/raw/\S+\.json)", text)


def cell_files(root: Path) -> dict[str, float]:
    """Every cell file and its modification time."""
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in (root / "results" / "raw").rglob("*.json")
    }


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose tiny sweep has run once."""
    root = make_project(tmp_path_factory.mktemp("sweep"))
    done = snakemake(root)
    assert (
        "Using workflow specific profile profiles/default" in done.stdout + done.stderr
    )
    return root


def copy_of(swept: Path, tmp_path: Path) -> Path:
    """A private copy of the swept project, Snakemake's metadata included."""
    root = tmp_path / "project"
    shutil.copytree(swept, root, symlinks=True)
    return root


def test_sweep_writes_summary_and_self_contained_report(swept: Path) -> None:
    summary = pl.read_csv(swept / "results" / "summary.csv")
    assert summary.height == 6
    ok = summary.filter(pl.col("reps_ok") == 1)
    assert set(ok["driver"]) >= {"veth-bridge", "macvlan-bridge"}
    assert (ok["throughput_bps_mean"] > 1e6).all()

    html = (swept / "results" / "report.html").read_text()
    assert "<script src" not in html and "cdn.jsdelivr" not in html
    # One chart per topology and protocol: local TCP and local UDP.
    assert html.count('class="np-chart"') == 2
    cells = pl.read_parquet(swept / "results" / "cells.parquet")
    assert set(cells["status"]) <= {"ok", "skipped"}
    for log in ("logs/aggregate.log", "logs/report.log"):
        assert (swept / log).exists()
    assert list((swept / "logs" / "measure").rglob("*.log"))


def test_removed_cell_is_the_only_one_measured_again(
    swept: Path, tmp_path: Path
) -> None:
    root = copy_of(swept, tmp_path)
    gone = "results/raw/local/netns/veth-bridge/udp/mtu1500/pairs1/rep1.json"
    before = cell_files(root)
    (root / gone).unlink()

    done = snakemake(root)

    assert measured(done) == [gone]
    after = cell_files(root)
    assert {k: v for k, v in after.items() if k != gone} == {
        k: v for k, v in before.items() if k != gone
    }


def test_new_pair_count_measures_only_new_cells(swept: Path, tmp_path: Path) -> None:
    root = copy_of(swept, tmp_path)
    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    config["matrix"][0]["pairs"] = [1, 2]
    config["matrix"][0]["driver"] = ["veth-bridge", "macvlan-bridge", "ipvlan-l3"]
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    before = cell_files(root)

    done = snakemake(root)

    new = measured(done)
    assert len(new) == 6 and all("/pairs2/" in p for p in new)
    after = cell_files(root)
    assert all(after[k] == v for k, v in before.items())
    assert pl.read_csv(root / "results" / "summary.csv").height == 12


def test_new_driver_measures_only_its_cells(swept: Path, tmp_path: Path) -> None:
    root = copy_of(swept, tmp_path)
    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    config["matrix"][0]["driver"].append("routed")
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    before = cell_files(root)

    done = snakemake(root)

    new = measured(done)
    assert sorted(new) == [
        "results/raw/local/netns/routed/tcp/mtu1500/pairs1/rep1.json",
        "results/raw/local/netns/routed/udp/mtu1500/pairs1/rep1.json",
    ]
    assert all(cell_files(root)[k] == v for k, v in before.items())
    summary = pl.read_csv(root / "results" / "summary.csv")
    assert "routed" in set(summary["driver"])


def test_docker_settings_do_not_measure_netns_cells_again(
    swept: Path, tmp_path: Path
) -> None:
    root = copy_of(swept, tmp_path)
    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    config["docker"] = {"image": "npother:1", "timeout_s": 30}
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config))

    done = snakemake(root, "--dry-run")

    assert "rule measure:" not in done.stdout + done.stderr


def test_editing_report_code_does_not_measure_again(
    swept: Path, tmp_path: Path
) -> None:
    root = copy_of(swept, tmp_path)
    script = root / "workflow" / "scripts" / "report.py"
    script.write_text(script.read_text() + "\n# an edit\n")
    aggregate = root / "workflow" / "scripts" / "aggregate.py"
    aggregate.write_text(aggregate.read_text() + "\n# an edit\n")

    done = snakemake(root)

    assert measured(done) == []
    assert "rule report:" in done.stdout + done.stderr


def _start(root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        COMMAND,
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        env=project_env(root),
    )


def _wait_for_cells(root: Path, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = root / "results" / "raw"
        if raw.exists() and len(list(raw.rglob("*.json"))) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} cells were measured in {timeout} s")


@pytest.mark.parametrize("how", ["ctrl-c", "kill-9"])
def test_interrupted_sweep_resumes_with_the_same_command(
    how: str, tmp_path: Path
) -> None:
    root = make_project(tmp_path)
    before_ns = np_namespaces()
    sweep = _start(root)
    _wait_for_cells(root, 2)
    time.sleep(0.3)  # most likely inside the next cell now

    if how == "ctrl-c":
        # A terminal's Ctrl-C reaches the whole foreground process group.
        os.killpg(sweep.pid, signal.SIGINT)
        sweep.wait(timeout=60)
    else:
        sweep.kill()
        sweep.wait(timeout=10)
    kept = cell_files(root)

    done = snakemake(root)

    again = set(measured(done))
    assert not again & set(kept), "a cell measured before the interruption ran again"
    assert len(cell_files(root)) == 6
    assert (root / "results" / "report.html").exists()
    assert all(cell_files(root)[k] == v for k, v in kept.items())
    assert np_namespaces() <= before_ns


def test_more_cores_never_overlap_two_measurements(tmp_path: Path) -> None:
    config = {**TINY, "matrix": [{**TINY["matrix"][0], "driver": ["veth-bridge"]}]}
    config["repetitions"] = 2
    root = make_project(tmp_path, config)

    snakemake(root, "--cores", "4")

    spans = []
    for path in (root / "results" / "raw").rglob("*.json"):
        cell = json.loads(path.read_text())
        assert cell["status"] == "ok"
        spans.append((cell["started_at"], cell["ended_at"]))
    spans.sort()
    assert len(spans) == 4
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, "two cells were measured at the same time"


@needs_docker
def test_a_sweep_over_both_backends_compares_them_in_the_report(
    tmp_path: Path,
) -> None:
    config = {
        "matrix": [
            {
                "backend": ["netns", "docker"],
                "driver": ["veth-bridge", "macvlan-bridge"],
                "protocol": ["tcp"],
                "mtu": [1500],
                "pairs": [1, 2],
            }
        ],
        "repetitions": 1,
        "iperf": {"duration_s": 1, "omit_s": 0},
    }
    root = make_project(tmp_path, config)

    snakemake(root)

    files = cell_files(root)
    assert len(files) == 8
    assert sum("/docker/" in f for f in files) == 4
    summary = pl.read_csv(root / "results" / "summary.csv")
    assert sorted(summary["backend"].unique().to_list()) == ["docker", "netns"]
    assert summary["reps_ok"].to_list() == [1] * 8
    html = (root / "results" / "report.html").read_text()
    assert "What the container runtime costs" in html
    assert '"backend"' in html  # the figures' data and encoding
    assert "cdn." not in html and "https://" not in html.split("<script")[0]
