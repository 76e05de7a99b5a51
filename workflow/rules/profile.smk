rule profile:
    """Prefill and decode speed, memory and KV-cache bytes of a method against dense and
    against the same sublayers removed by hand (the ceiling), in one process."""
    input:
        unpack(profile_inputs),
    output:
        csv=PATTERNS.profile("{method}", "{ratio}"),
        json=PATTERNS.profile("{method}", "{ratio}", "json"),
        md=PATTERNS.profile("{method}", "{ratio}", "md"),
    params:
        method=method_params,
        label=method_label,
        profile=config["profile"],
        model=config["model"],
    conda:
        "../envs/mindskip.yaml"
    log:
        PATTERNS.job("profile", "{method}", "{ratio}").log,
    benchmark:
        PATTERNS.job("profile", "{method}", "{ratio}").benchmark
    script:
        "../scripts/profile.py"
