# Stage 5: every figure, redrawn from the results table and the ranking only.


rule figures:
    input:
        results=rules.collect.output.parquet,
        ranking=rules.rank.output.overall,
        code=code("ranking", "figures"),
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
