"""A driver from another package, installed as one, runs a real cell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, needs_root

PLUGIN = REPO / "tests" / "plugins" / "veth-direct"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The veth-direct package installed into a folder of its own."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    subprocess.run(
        [*pip, "--target", str(target), str(PLUGIN)],
        check=True,
        cwd=build,
        timeout=300,
    )
    return target


def netpipe(plugin: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run netpipe with the plugin's folder on the path."""
    env = {**os.environ, "PYTHONPATH": f"{plugin}{os.pathsep}{REPO}"}
    return subprocess.run(
        [sys.executable, "-m", "netpipe.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_plugin_driver_is_listed_with_its_source(plugin_path: Path) -> None:
    done = netpipe(plugin_path, "drivers", "--json")

    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert "netpipe-veth-direct" in rows["veth-direct"]["source"]
    assert rows["veth-bridge"]["source"] == "netpipe (built in)"


def test_without_the_plugin_the_driver_is_unknown(tmp_path: Path) -> None:
    done = netpipe(tmp_path, "validate", str(write_config(tmp_path)))

    assert done.returncode == 2
    assert "'veth-direct'" in done.stderr and "veth-bridge" in done.stderr


@pytest.mark.root
@needs_root
def test_plugin_driver_measures_a_cell(
    plugin_path: Path, tmp_path: Path, state_dir: Path
) -> None:
    out = tmp_path / "cell.json"
    done = netpipe(
        plugin_path,
        *("measure", "--config", str(write_config(tmp_path))),
        *("--driver", "veth-direct", "--pairs", "2", "--output", str(out)),
    )

    assert done.returncode == 0, done.stderr
    cell = json.loads(out.read_text())
    assert cell["status"] == "ok", cell["reason"]
    assert cell["driver"]["name"] == "veth-direct"
    assert len(cell["pairs"]) == 2


def write_config(folder: Path) -> Path:
    """A config whose only driver is the plugin's."""
    path = folder / "config.yaml"
    path.write_text(
        "matrix:\n  - {driver: [veth-direct], protocol: [tcp], mtu: [1500], "
        "pairs: [2]}\niperf: {duration_s: 1, omit_s: 0}\n"
    )
    return path
