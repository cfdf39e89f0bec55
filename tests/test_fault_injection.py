"""A short fault-injection run: two SIGKILLs of a real sweep, two resumes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from benchmarks import fault_injection
from netpipe.backends.netns import NetnsBackend
from netpipe.naming import new_token
from tests.conftest import needs_root

pytestmark = [pytest.mark.root, pytest.mark.workflow, needs_root]


def test_a_sweep_killed_while_measuring_loses_and_leaks_nothing(
    tmp_path: Path,
) -> None:
    out = tmp_path / "fault.json"
    code = fault_injection.main(
        [
            *("--kills", "2", "--seed", "2", "--drivers", "veth-bridge"),
            *("--protocols", "tcp", "--pairs", "1"),
            *("--phases", "iperf3", "aggregating"),
            *("--output", str(out)),
        ]
    )

    tally = json.loads(out.read_text())
    assert code == 0, tally
    assert tally["trials"] == 2
    assert sum(tally["kills"].values()) + tally["missed"] == 2
    assert tally["kills"]["iperf3"] + tally["kills"]["aggregating"] >= 1
    assert not (tally["leaks"] or tally["corrupt"] or tally["remeasured"])


def test_the_leak_check_finds_a_namespace_and_a_process_of_the_run(
    tmp_path: Path, state_dir: Path
) -> None:
    project = fault_injection.Project(
        tmp_path, fault_injection.default_config(["veth-bridge"], ["tcp"], [1])
    )
    token = new_token()
    project.tokens.add(token)
    backend = NetnsBackend()
    try:
        backend.create(f"np{token}s0")
        sleeper = subprocess.Popen(
            ["sleep", "30"], env={**os.environ, fault_injection.MARKER: project.marker}
        )
        try:
            found = fault_injection.leftovers(project)
        finally:
            sleeper.kill()
            sleeper.wait()
    finally:
        backend.remove(f"np{token}s0")
        backend.close()
        project.state.rmdir()

    assert f"namespace np{token}s0" in found
    assert f"process {sleeper.pid}" in found
    assert fault_injection.leftovers(project) == []
