rule evaluate:
    """lm-eval scores of one method at one skip ratio; per-item logs kept for paired
    comparisons against dense."""
    input:
        unpack(method_inputs),
    output:
        scores=PATTERNS.eval("{method}", "{ratio}"),
        item_log=PATTERNS.items("{method}", "{ratio}"),
        lm_eval=PATTERNS.lm_eval("{method}", "{ratio}"),
        prompts=PATTERNS.prompts("{method}", "{ratio}"),
    params:
        method=method_params,
        label=method_label,
        eval=config["eval"],
        model=config["model"],
    conda:
        "../envs/mindskip.yaml"
    log:
        PATTERNS.job("eval", "{method}", "{ratio}").log,
    benchmark:
        PATTERNS.job("eval", "{method}", "{ratio}").benchmark
    script:
        "../scripts/evaluate.py"
