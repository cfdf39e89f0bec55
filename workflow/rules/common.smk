# Validation and expansion of the config; everything else asks these.
import re

from netpipe.config import validate
from netpipe.errors import ConfigError
from netpipe.matrix import dimension_values, expand

try:
    SWEEP = validate(config)
except ConfigError as exc:
    raise WorkflowError(f"invalid config: {exc}") from None

CELLS = expand(SWEEP)
VALUES = dimension_values(CELLS)


wildcard_constraints:
    topology="|".join(map(re.escape, VALUES["topology"])),
    driver="|".join(map(re.escape, VALUES["driver"])),
    protocol="|".join(VALUES["protocol"]),
    mtu="[0-9]+",
    pairs="[0-9]+",
    rep="[0-9]+",


def get_cell_results(wildcards):
    """Every cell's result file, the input of the aggregate step."""
    return [str(cell.path("results")) for cell in CELLS]
