# Stage 5: every figure, redrawn from the results table and the ranking only.


rule figures:
    input:
        results=rules.collect.output.parquet,
        overall=rules.rank.output.overall,
        tasks=rules.rank.output.tasks,
        settings=rules.rank.output.settings,
        top=rules.rank.output.top,
        code=code("ranking", "markdown", "figures", "results"),
    output:
        [
            report(
                f"{FIGURES}/{name}.{ext}",
                caption=f"../report/{name}.rst",
                category="Figures",
                labels={"figure": name, "format": ext},
            )
            for name in FIGURE_NAMES
            for ext in ("png", "pdf")
        ],
    log:
        "logs/figures.log",
    conda:
        "../environment.yml"
    params:
        ranking=options("ranking"),
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    script:
        "../workflow_scripts/figures.py"
