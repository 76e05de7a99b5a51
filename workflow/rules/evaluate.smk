rule evaluate:
    """lm-eval scores of one method at one skip ratio; per-item logs kept for paired
    comparisons against dense."""
    input:
        unpack(method_inputs),
    output:
        scores=f"{R}/eval/{{model}}/{{method}}/{{ratio}}/{{suite}}.json",
        item_log=f"{R}/eval/{{model}}/{{method}}/{{ratio}}/{{suite}}.items.jsonl.gz",
        lm_eval=f"{R}/eval/{{model}}/{{method}}/{{ratio}}/{{suite}}.lm_eval.json",
        prompts=f"{R}/eval/{{model}}/{{method}}/{{ratio}}/{{suite}}.prompts.jsonl.gz",
    params:
        method=method_params,
        label=method_label,
        eval=config["eval"],
        model=config["model"],
    conda:
        "../envs/mindskip.yaml"
    log:
        f"{R}/logs/eval/{{model}}/{{method}}/{{ratio}}/{{suite}}.log",
    benchmark:
        f"{R}/logs/benchmarks/eval/{{model}}/{{method}}/{{ratio}}/{{suite}}.tsv"
    script:
        "../scripts/evaluate.py"
