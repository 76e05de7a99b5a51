rule evaluate:
    """lm-eval scores of one method at one skip ratio; per-item logs kept for paired
    comparisons against dense."""
    input:
        unpack(method_inputs),
    output:
        scores="results/eval/{model}/{method}/{ratio}/{suite}.json",
        item_log="results/eval/{model}/{method}/{ratio}/{suite}.items.jsonl.gz",
        lm_eval="results/eval/{model}/{method}/{ratio}/{suite}.lm_eval.json",
    params:
        method=method_params,
        eval=config["eval"],
        model=config["model"],
    conda:
        "../envs/mindskip.yaml"
    log:
        "results/logs/eval/{model}/{method}/{ratio}/{suite}.log",
    benchmark:
        "results/logs/benchmarks/eval/{model}/{method}/{ratio}/{suite}.tsv"
    script:
        "../scripts/evaluate.py"
