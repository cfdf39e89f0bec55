"""Snakemake job: every cell file into cells.parquet and summary.csv."""

import logging

from netpipe.aggregate import aggregate

logging.basicConfig(
    filename=snakemake.log[0],  # noqa: F821
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
)
aggregate(
    snakemake.input,  # noqa: F821
    snakemake.output.cells,  # noqa: F821
    snakemake.output.summary,  # noqa: F821
)
