"""A short fault-injection run: two SIGKILLs of a real sweep, two resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import fault_injection
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
