# polars reads every cell file into one table and a summary per cell point.


rule aggregate:
    input:
        get_cell_results,
    output:
        cells="results/cells.parquet",
        summary="results/summary.csv",
    log:
        "logs/aggregate.log",
    script:
        "../scripts/aggregate.py"
