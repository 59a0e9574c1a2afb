# Stage 5: every figure, redrawn from the results table and the ranking only.


rule figures:
    input:
        results=rules.collect.output.parquet,
        ranking=rules.rank.output.overall,
        code=code("ranking", "figures"),
    output:
        expand(f"{FIGURES}/{{name}}.{{ext}}", name=FIGURE_NAMES, ext=["png", "pdf"]),
    params:
        ranking=options("ranking"),
        out_dir=FIGURES,
    log:
        "logs/figures.log",
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/figures.py"
