rule rank_importance:
    """Static drop ranking ("What Matters in Transformers?"): cosine similarity between a
    unit's input and output on calibration text; the most similar are dropped first."""
    input:
        **ASSET_INPUTS,
    output:
        ranking=PATTERNS.ranking("{unit}"),
    params:
        baselines=baseline_settings("calibration_length"),
        split=split_settings(),
        data=config["datasets"][config["baselines"]["calibration_data"]],
        model=config["model"],
    conda:
        "../envs/mindskip.yaml"
    log:
        PATTERNS.job("ranking", "{unit}").log,
    benchmark:
        PATTERNS.job("ranking", "{unit}").benchmark
    script:
        "../scripts/rank_importance.py"


rule calibrate_thresholds:
    """Thresholds of a trained router that hit a requested skip ratio on held-out texts
    (held-out evaluation items in the scoring format, or held-out records): one tau per
    layer (``per_layer``: every routed layer skips the same share) or one shared tau
    (``global``: the routers' own allocation)."""
    input:
        unpack(calibration_inputs),
    output:
        calibration=PATTERNS.calibration("{run}", "{ratio}"),
    params:
        baselines=baseline_settings(
            "calibration_length", "calibration_mode", "calibration_text", "calibration_samples"
        ),
        texts=calibration_text_settings(),
        model=config["model"],
    conda:
        "../envs/mindskip.yaml"
    log:
        PATTERNS.job("calibration", "{run}", "{ratio}").log,
    benchmark:
        PATTERNS.job("calibration", "{run}", "{ratio}").benchmark
    script:
        "../scripts/calibrate_thresholds.py"
