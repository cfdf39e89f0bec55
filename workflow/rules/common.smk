# Validation and expansion of the config; everything else asks these.
import os
import re
import sys
from pathlib import Path

from netpipe.config import validate
from netpipe.errors import NetpipeError
from netpipe.iperf.command import resolve_binary
from netpipe.matrix import dimension_values, expand

try:
    SWEEP = validate(config)
    # Every cell is measured on this machine: a missing iperf3 is one error
    # now, rather than every cell failed later.
    resolve_binary(SWEEP.iperf.binary)
except NetpipeError as exc:
    raise WorkflowError(f"invalid config: {exc}") from None

CELLS = expand(SWEEP)
VALUES = dimension_values(CELLS)

# Every node must answer before a switched cell is measured; a bad inventory
# is one error naming each failing node, not a sweep of failed cells. Only
# when such a cell is still to be measured: a finished sweep's report can be
# rebuilt, and its local cells measured, with the nodes gone.
if any(
    cell.topology == "switched"
    and cell.backend == "netns"
    and not cell.path("results").exists()
    for cell in CELLS
):
    from netpipe.remote import check_nodes

    try:
        for warning in check_nodes(SWEEP)["warnings"]:
            print(f"netpipe: warning: {warning}", file=sys.stderr)
    except NetpipeError as exc:
        raise WorkflowError(f"the nodes are not ready: {exc}") from None


wildcard_constraints:
    topology="|".join(map(re.escape, VALUES["topology"])),
    backend="|".join(VALUES["backend"]),
    driver="|".join(map(re.escape, VALUES["driver"])),
    protocol="|".join(VALUES["protocol"]),
    mtu="[0-9]+",
    pairs="[0-9]+",
    rep="[0-9]+",


def get_cell_results(wildcards):
    """Every cell's result file, the input of the aggregate step."""
    return [str(cell.path("results")) for cell in CELLS]


def mark_summary_stale_if_cells_are_missing():
    """Make a deleted cell file be measured again.

    Snakemake ignores a missing intermediate file while everything downstream
    of it exists (snakemake issue 1978), so deleting one cell file would not
    remeasure it. A summary that lacks a cell is stale: setting its time back
    makes the aggregate step, and so the missing measurement, due again.
    """
    summary = Path("results/cells.parquet")
    if summary.exists() and any(not cell.path("results").exists() for cell in CELLS):
        os.utime(summary, (0, 0))


mark_summary_stale_if_cells_are_missing()
