rule train_routers:
    """Router-Tuning: only the routers train; everything else stays frozen."""
    input:
        unpack(run_inputs),
    output:
        routers="results/routers/{model}/{run}/routers.safetensors",
        config="results/routers/{model}/{run}/mindskip_config.json",
        metrics="results/routers/{model}/{run}/metrics.json",
    params:
        run=run_params,
        data=lambda wc: config["datasets"][PLAN.runs[wc.run].entry["data"]],
        recipe=config["recipe"],
        split=split_settings(),
        model=config["model"],
    conda:
        "../envs/mindskip.yaml"
    log:
        "results/logs/train/{model}/{run}.log",
    benchmark:
        "results/logs/benchmarks/train/{model}/{run}.tsv"
    script:
        "../scripts/train_routers.py"
