# Stage 7: the report's tables (leaderboard, results, BoB's Tables 1 and 2, its appendix tables) as HTML pages;
# `snakemake --report` gathers them with every figure.


rule report_tables:
    input:
        results=rules.collect.output.parquet,
        overall=rules.rank.output.overall,
        tasks=rules.rank.output.tasks,
        intervals=rules.rank.output.intervals,
        iqm=rules.rank.output.iqm,
        table2=rules.rank.output.table2_csv,
        table1=rules.backbone_tables.output.table1_csv,
        code=code("report_tables.py"),
    output:
        **{
            name: report(
                f"{RESULTS}/report/{name}.html",
                caption=f"../report/tables/{name}.rst",
                category="Tables",
                labels={"table": label},
            )
            for name, label in REPORT_TABLES.items()
        },
    log:
        logfile("report_tables.log"),
    conda:
        "../environment.yml"
    resources:
        **job_resources("report_tables"),
    script:
        "../workflow_scripts/report_tables.py"
