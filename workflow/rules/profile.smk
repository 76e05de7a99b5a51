rule profile:
    """Prefill and decode speed, memory and KV-cache bytes of a method against dense and
    against the same sublayers removed by hand (the ceiling), in one process."""
    input:
        unpack(method_inputs),
    output:
        csv="results/profile/{model}/{method}/{ratio}/profile.csv",
        json="results/profile/{model}/{method}/{ratio}/profile.json",
        md="results/profile/{model}/{method}/{ratio}/profile.md",
    params:
        method=method_params,
        profile=config["profile"],
        model=config["model"],
    conda:
        "../envs/mindskip.yaml"
    log:
        "results/logs/profile/{model}/{method}/{ratio}.log",
    benchmark:
        "results/logs/benchmarks/profile/{model}/{method}/{ratio}.tsv"
    script:
        "../scripts/profile.py"
