# netpipe: one job per cell of driver x protocol x MTU x pairs x topology x rep,
# then one summary and one self-contained report. See README.md.

configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "results/report.html",
