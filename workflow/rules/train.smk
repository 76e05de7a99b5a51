rule generate_data:
    """A self-generated training set: the training prompts of another dataset's held-out
    split, answered by the dense model (greedy, bounded length); built once, its settings
    and hashes in the sidecar."""
    input:
        **ASSET_INPUTS,
    output:
        data=PATTERNS.data("{dataset}"),
        manifest=PATTERNS.data_manifest("{dataset}"),
    params:
        generate=lambda wc: generation_settings(wc.dataset),
        source=lambda wc: config["datasets"][config["datasets"][wc.dataset]["generate"]],
        split=lambda wc: split_settings(config["datasets"][wc.dataset]["generate"]),
        model=config["model"],
    conda:
        "../envs/mindskip.yaml"
    log:
        PATTERNS.job("data", "{dataset}").log,
    benchmark:
        PATTERNS.job("data", "{dataset}").benchmark
    script:
        "../scripts/generate_data.py"


rule train_lora:
    """The paper's LoRA setting, first half: a LoRA-only fine-tune of the dense model."""
    input:
        unpack(lora_inputs),
    output:
        **PATTERNS.lora("{lora}").outputs(),
    params:
        lora=lambda wc: canonical(PLAN.loras[wc.lora].entry),
        source=lambda wc: data_source(PLAN.loras[wc.lora].entry["data"]),
        split=lambda wc: split_settings(PLAN.loras[wc.lora].entry["data"]),
        recipe=config["recipe"],
        model=config["model"],
    conda:
        "../envs/mindskip.yaml"
    log:
        PATTERNS.job("lora", "{lora}").log,
    benchmark:
        PATTERNS.job("lora", "{lora}").benchmark
    script:
        "../scripts/train_lora.py"


rule train_routers:
    """Router-Tuning: only the routers train; everything else stays frozen."""
    input:
        unpack(run_inputs),
    output:
        **PATTERNS.routers("{run}").outputs(),
    params:
        run=run_params,
        source=lambda wc: data_source(PLAN.runs[wc.run].entry["data"]),
        recipe=run_recipe,
        split=lambda wc: split_settings(PLAN.runs[wc.run].entry["data"]),
        model=config["model"],
    conda:
        "../envs/mindskip.yaml"
    log:
        PATTERNS.job("train", "{run}").log,
    benchmark:
        PATTERNS.job("train", "{run}").benchmark
    script:
        "../scripts/train_routers.py"
