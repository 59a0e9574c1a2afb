# Stage 4: one tidy results table, then the BoB z-score ranking.

# What collect writes, in either mode: the table (also offered for download in the report) and the
# bootstrap replicates of every primary metric.
COLLECTED = dict(
    csv=report(
        f"{RESULTS}/results.csv",
        caption="../report/tables/results_csv.rst",
        category="Tables",
        labels={"table": "results.csv (every metric, download)"},
    ),
    parquet=f"{RESULTS}/results.parquet",
    replicates=f"{RESULTS}/replicates.parquet",
)

if config["results_table"]:

    # Redraw mode: an existing table replaces the cell records, so no task job is part of the run.
    rule collect:
        input:
            table=config["results_table"],
            code=code("import_results.py"),
        output:
            **COLLECTED,
        log:
            logfile("collect.log"),
        conda:
            "../environment.yml"
        resources:
            **job_resources("collect"),
        script:
            "../workflow_scripts/import_results.py"

else:

    rule collect:
        input:
            records=all_cell_records(),
            code=code("collect.py"),
        output:
            **COLLECTED,
        log:
            logfile("collect.log"),
        conda:
            "../environment.yml"
        resources:
            **job_resources("collect"),
        params:
            # Display metadata comes from the registries here, so editing it reruns only the aggregates.
            backbones=lambda wc: {
                b: bobench_config.display_spec(BACKBONES[b])
                for b in config["backbones"]
            },
            datasets=lambda wc: dataset_display(),
        script:
            "../workflow_scripts/collect.py"


rule rank:
    input:
        results=rules.collect.output.parquet,
        replicates=rules.collect.output.replicates,
        code=code("rank.py"),
    output:
        overall=f"{RESULTS}/ranking/ranking_overall.csv",
        tasks=f"{RESULTS}/ranking/ranking_tasks.csv",
        settings=f"{RESULTS}/ranking/ranking_settings.csv",
        top=f"{RESULTS}/ranking/ranking_top.csv",
        markdown=f"{RESULTS}/ranking/ranking.md",
        intervals=f"{RESULTS}/ranking/ranking_intervals.csv",
        iqm=f"{RESULTS}/ranking/ranking_iqm.csv",
        table2_csv=f"{RESULTS}/ranking/table2.csv",
        table2_md=f"{RESULTS}/ranking/table2.md",
    log:
        logfile("rank.log"),
    conda:
        "../environment.yml"
    resources:
        **job_resources("rank"),
    params:
        ranking=options("ranking"),
        bootstrap=options("bootstrap"),
        seed=config["seed"],
    script:
        "../workflow_scripts/rank.py"


# The values this run gets, every default filled in, and the files they came from: the config
# to read (or to pass back with --configfile) when asking what a results table was made with.
rule resolved_config:
    input:
        code=code("resolved_config.py"),
    output:
        f"{RESULTS}/config.resolved.yaml",
    log:
        logfile("resolved_config.log"),
    conda:
        "../environment.yml"
    resources:
        **job_resources("resolved_config"),
    params:
        config=bobench_config.canonical(config),
        sources=CONFIG_FILES,
    script:
        "../workflow_scripts/resolved_config.py"
