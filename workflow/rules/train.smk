rule train_routers:
    """Router-Tuning: only the routers train; everything else stays frozen."""
    input:
        assets=ASSETS,
    output:
        routers=f"results/routers/{{model}}/{{run}}/routers.safetensors",
        metrics=f"results/routers/{{model}}/{{run}}/metrics.json",
    params:
        run=lambda wc: RUNS[wc.run],
        data=lambda wc: config["datasets"][RUNS[wc.run]["data"]],
        recipe=config["recipe"],
        holdout=config["baselines"]["calibration_samples"],
        model=config["model"],
    conda:
        "../envs/mindskip.yaml"
    log:
        "results/logs/train/{model}/{run}.log",
    benchmark:
        "results/logs/benchmarks/train/{model}/{run}.tsv"
    script:
        "../scripts/train_routers.py"
