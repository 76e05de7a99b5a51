rule roles:
    """Which runs the claims compare (mindskip.roles): the standard MindSkip run, the MLP,
    block and token runs, the sample-size series, the LoRA pair, as the plan chose them
    from the config. The verdicts read this file; they never guess a run's role."""
    output:
        PATHS.roles,
    params:
        roles=PLAN.roles.to_dict(),
    log:
        PATHS.job("roles").log,
    benchmark:
        PATHS.job("roles").benchmark
    conda:
        "../envs/mindskip.yaml"
    script:
        "../scripts/write_roles.py"


rule report:
    """Tables (CSV, Markdown, LaTeX) and figures (PNG, PDF), the paper's numbers beside
    ours. Reads only the JSON/CSV of the other stages: no torch, rebuilds in seconds."""
    input:
        roles=PATHS.roles,
        evals=eval_outputs(),
        item_logs=[PATHS.items(m, r) for m, r in PLAN.eval_jobs],
        profiles=profile_outputs(),
        metrics=metrics_outputs(),
        paper=workflow.source_path("../../resources/paper/main_results.csv"),
        published=published_inputs(),
    output:
        tables=table_outputs(),
        pdfs=figure_outputs("pdf"),
        pngs=[
            report(png, category="Figures", caption="../report/figure.rst")
            for png in figure_outputs("png")
        ],
    params:
        paper_dir=PAPER_DIR,
        model=config["model"]["name"],
    conda:
        "../envs/mindskip.yaml"
    log:
        PATHS.job("report").log,
    script:
        "../scripts/report.py"
