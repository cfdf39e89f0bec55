"""A short fault-injection run: three SIGKILLs of a real sweep, three resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import fault_injection
from tests.conftest import needs_root

pytestmark = [pytest.mark.root, pytest.mark.workflow, needs_root]


def test_a_sweep_killed_in_three_phases_loses_and_leaks_nothing(
    tmp_path: Path,
) -> None:
    out = tmp_path / "fault.json"
    code = fault_injection.main(
        [
            *("--kills", "3", "--seed", "2", "--drivers", "veth-bridge"),
            *("--protocols", "tcp", "--pairs", "1"),
            *("--phases", "iperf3", "teardown", "report"),
            *("--output", str(out)),
        ]
    )

    tally = json.loads(out.read_text())
    assert code == 0, tally
    assert tally["trials"] == 3
    assert sum(tally["kills"].values()) + tally["missed"] == 3
    assert tally["kills"]["iperf3"] + tally["kills"]["report"] >= 1
    assert not (tally["leaks"] or tally["corrupt"] or tally["remeasured"])
