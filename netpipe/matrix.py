"""The matrix of cells: expanding a config, and where each cell's result lives.

A cell is one point of the matrix (topology, backend, driver, protocol, MTU,
pair count, repetition). The sweep is the union of the config's sub-matrices, so
the same cell named by two sub-matrices is measured once.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from netpipe.config import Config

RAW_PATTERN = (
    "raw/{topology}/{backend}/{driver}/{protocol}/mtu{mtu}/pairs{pairs}/rep{rep}.json"
)

BACKENDS = ("netns", "docker")
"""Where endpoints live: network namespaces, or Docker containers."""


@dataclass(frozen=True, order=True)
class Cell:
    """One point of the experiment matrix."""

    topology: str
    driver: str
    protocol: str
    mtu: int
    pairs: int
    rep: int
    # Last, with a default, so that a cell named without it is a netns cell.
    backend: str = "netns"

    @classmethod
    def from_mapping(cls, values: Any) -> Cell:
        """Build a cell from a mapping such as Snakemake's wildcards."""
        return cls(
            topology=str(values["topology"]),
            driver=str(values["driver"]),
            protocol=str(values["protocol"]),
            mtu=int(values["mtu"]),
            pairs=int(values["pairs"]),
            rep=int(values["rep"]),
            backend=str(values.get("backend", "netns")),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the cell's coordinates as a plain dict."""
        return asdict(self)

    def label(self) -> str:
        """Return a short human-readable name for logs."""
        return (
            f"{self.topology}/{self.backend}/{self.driver}/{self.protocol}/"
            f"mtu{self.mtu}/"
            f"pairs{self.pairs}/rep{self.rep}"
        )

    def path(self, results: str | Path = "results") -> Path:
        """Return the path of this cell's result file under ``results``."""
        return Path(results) / RAW_PATTERN.format(**self.to_dict())


def expand(config: Config) -> list[Cell]:
    """Return every cell of the config's sweep, sorted, each once."""
    cells: set[Cell] = set()
    for sub in config.matrix:
        reps = sub.get("repetitions", config.repetitions)
        for topology, backend, driver, protocol, mtu, pairs, rep in itertools.product(
            sub.get("topology", ["local"]),
            sub.get("backend", ["netns"]),
            sub["driver"],
            sub["protocol"],
            sub["mtu"],
            sub["pairs"],
            range(1, reps + 1),
        ):
            cells.add(Cell(topology, driver, protocol, mtu, pairs, rep, backend))
    return sorted(cells)


def dimension_values(cells: list[Cell]) -> dict[str, list[Any]]:
    """Return the distinct values of every dimension, for wildcard constraints."""
    fields = ("topology", "backend", "driver", "protocol", "mtu", "pairs", "rep")
    return {f: sorted({getattr(c, f) for c in cells}) for f in fields}
