# One job per cell. The `testbed` resource (limited to 1 by the workflow
# profile) and netpipe's own kernel lock keep two measurements apart.


rule measure:
    output:
        "results/raw/{topology}/{backend}/{driver}/{protocol}/mtu{mtu}/pairs{pairs}/rep{rep}.json",
    log:
        "logs/measure/{topology}/{backend}/{driver}/{protocol}/mtu{mtu}/pairs{pairs}/rep{rep}.log",
    params:
        # What a cell's numbers depend on: a changed setting measures it again.
        # The docker settings only matter to docker cells.
        settings=lambda wc: (
            SWEEP.raw["iperf"]
            | SWEEP.raw["network"]
            | (SWEEP.raw["docker"] if wc.backend == "docker" else {})
        ),
    resources:
        testbed=1,
    script:
        "../scripts/measure.py"
