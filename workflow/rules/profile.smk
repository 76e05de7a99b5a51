rule profile:
    """Prefill and decode speed, memory and KV-cache bytes of a method against dense and
    against the same sublayers removed by hand (the ceiling), in one process."""
    input:
        unpack(profile_inputs),
    output:
        csv=f"{R}/profile/{{model}}/{{method}}/{{ratio}}/profile.csv",
        json=f"{R}/profile/{{model}}/{{method}}/{{ratio}}/profile.json",
        md=f"{R}/profile/{{model}}/{{method}}/{{ratio}}/profile.md",
    params:
        method=method_params,
        label=method_label,
        profile=config["profile"],
        model=config["model"],
    conda:
        "../envs/mindskip.yaml"
    log:
        f"{R}/logs/profile/{{model}}/{{method}}/{{ratio}}.log",
    benchmark:
        f"{R}/logs/benchmarks/profile/{{model}}/{{method}}/{{ratio}}.tsv"
    script:
        "../scripts/profile.py"
