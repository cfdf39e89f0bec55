"""The matrix: how a config expands into cells, and where each cell's file lives."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml

from netpipe.config import load, validate
from netpipe.matrix import RAW_PATTERN, Cell, dimension_values, expand

REPO = Path(__file__).resolve().parent.parent
DIMENSIONS = ("topology", "driver", "protocol", "mtu", "pairs")


@pytest.fixture(autouse=True)
def nothing_left_behind() -> None:
    """Skip conftest's np* leak check: these tests create no kernel objects."""
    # The check compares the whole machine's np* links before and after each
    # test, so it fails these pure tests whenever a root test runs alongside.


def cells_by_hand(path: Path) -> set[tuple[Any, ...]]:
    """Expand a config file's sub-matrices from its raw YAML, without netpipe."""
    data = yaml.safe_load(path.read_text())
    top_reps = data.get("repetitions", 3)
    found = set()
    for sub in data["matrix"]:
        values = [sub.get(d, ["local"]) for d in DIMENSIONS]
        reps = range(1, sub.get("repetitions", top_reps) + 1)
        found |= set(itertools.product(*values, reps))
    return found


def sub(**values: Any) -> dict[str, Any]:
    """A sub-matrix with one value per dimension unless given."""
    base = {"driver": ["veth-bridge"], "protocol": ["tcp"], "mtu": [1500]}
    return {**base, "pairs": [1], **values}


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_config_expands_to_every_combination_once(name: str) -> None:
    path = REPO / "config" / name
    expected = cells_by_hand(path)

    cells = expand(load(path))

    assert len(cells) == len(expected)
    assert {(*(getattr(c, d) for d in DIMENSIONS), c.rep) for c in cells} == expected


def test_default_config_is_the_product_of_its_values() -> None:
    path = REPO / "config" / "config.yaml"
    data = yaml.safe_load(path.read_text())
    (only,) = data["matrix"]
    product = 1
    for dimension in DIMENSIONS:
        product *= len(only[dimension])

    cells = expand(load(path))

    assert len(cells) == product * data["repetitions"]


def test_cells_come_sorted() -> None:
    cells = expand(validate({"matrix": [sub(mtu=[9000, 1500], pairs=[4, 1])]}))

    assert cells == sorted(cells)


def test_sub_matrix_repetitions_override_the_top_level() -> None:
    config = validate(
        {
            "repetitions": 2,
            "matrix": [sub(protocol=["tcp"]), sub(protocol=["udp"], repetitions=5)],
        }
    )

    reps = {
        protocol: sorted(c.rep for c in expand(config) if c.protocol == protocol)
        for protocol in ("tcp", "udp")
    }

    assert reps == {"tcp": [1, 2], "udp": [1, 2, 3, 4, 5]}


def test_cell_named_by_two_sub_matrices_is_measured_once() -> None:
    config = validate({"matrix": [sub(pairs=[1, 2]), sub(pairs=[2, 4])]})

    cells = expand(config)

    assert len(cells) == len(set(cells)) == 3 * config.repetitions
    assert sorted({c.pairs for c in cells}) == [1, 2, 4]


def test_overlapping_sub_matrices_with_different_repetitions_take_the_most() -> None:
    config = validate(
        {"matrix": [sub(repetitions=2), sub(repetitions=4)], "repetitions": 1}
    )

    assert [c.rep for c in expand(config)] == [1, 2, 3, 4]


def test_topology_defaults_to_local() -> None:
    cells = expand(validate({"matrix": [sub()]}))

    assert {c.topology for c in cells} == {"local"}


def test_cell_path_follows_the_raw_pattern() -> None:
    cell = Cell("local", "veth-bridge", "tcp", 1500, 2, 1)

    assert cell.path() == Path(
        "results/raw/local/netns/veth-bridge/tcp/mtu1500/pairs2/rep1.json"
    )
    assert cell.path("/tmp/out") == Path("/tmp/out") / RAW_PATTERN.format(
        **cell.to_dict()
    )


def test_cell_label_names_every_coordinate() -> None:
    cell = Cell("local", "ipvlan-l3", "udp", 9000, 16, 3)

    assert cell.label() == "local/netns/ipvlan-l3/udp/mtu9000/pairs16/rep3"


def test_cell_round_trips_through_a_mapping() -> None:
    cell = Cell("local", "macvlan-bridge", "udp", 9000, 8, 2)

    assert Cell.from_mapping(cell.to_dict()) == cell


def test_cell_from_wildcard_strings() -> None:
    # Snakemake's wildcards are strings.
    wildcards = {
        "topology": "local",
        "backend": "docker",
        "driver": "veth-bridge",
        "protocol": "tcp",
        "mtu": "1500",
        "pairs": "2",
        "rep": "1",
    }

    cell = Cell.from_mapping(wildcards)

    assert cell == Cell("local", "veth-bridge", "tcp", 1500, 2, 1, "docker")
    assert cell.path() == Path("results") / RAW_PATTERN.format(**wildcards)


def test_dimension_values_are_distinct_and_sorted() -> None:
    config = validate({"matrix": [sub(mtu=[9000, 1500], pairs=[4, 1, 2])]})

    values = dimension_values(expand(config))

    assert values == {
        "topology": ["local"],
        "backend": ["netns"],
        "driver": ["veth-bridge"],
        "protocol": ["tcp"],
        "mtu": [1500, 9000],
        "pairs": [1, 2, 4],
        "rep": list(range(1, config.repetitions + 1)),
    }
