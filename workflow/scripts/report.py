"""Snakemake job: the self-contained HTML report."""

import logging

from netpipe.report import build_report

logging.basicConfig(
    filename=snakemake.log[0],  # noqa: F821
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
)
build_report(
    snakemake.input.cells,  # noqa: F821
    snakemake.input.summary,  # noqa: F821
    snakemake.params.config,  # noqa: F821
    snakemake.output[0],  # noqa: F821
)
