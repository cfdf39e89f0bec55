# One job per cell. The `testbed` resource (limited to 1 by the workflow
# profile) and netpipe's own kernel lock keep two measurements apart.


rule measure:
    output:
        "results/raw/{topology}/{backend}/{driver}/{protocol}/mtu{mtu}/pairs{pairs}/rep{rep}.json",
    log:
        "logs/measure/{topology}/{backend}/{driver}/{protocol}/mtu{mtu}/pairs{pairs}/rep{rep}.log",
    params:
        settings=lambda wc: SWEEP.raw["iperf"] | SWEEP.raw["network"] | SWEEP.raw["docker"],
    resources:
        testbed=1,
    script:
        "../scripts/measure.py"
