# altair charts and tables in one HTML file with the Vega libraries inlined.


rule report:
    input:
        cells="results/cells.parquet",
        summary="results/summary.csv",
    output:
        "results/report.html",
    log:
        "logs/report.log",
    params:
        config=lambda wc: SWEEP.raw,
    script:
        "../scripts/report.py"
