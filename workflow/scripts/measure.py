"""Snakemake job: measure the cell named by the wildcards."""

import logging

from netpipe.config import validate
from netpipe.matrix import Cell
from netpipe.runner import measure

logging.basicConfig(
    filename=snakemake.log[0],  # noqa: F821
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
)
measure(
    Cell.from_mapping(snakemake.wildcards),  # noqa: F821
    validate(snakemake.config),  # noqa: F821
    snakemake.output[0],  # noqa: F821
)
