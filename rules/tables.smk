# Stage 6: paper tables that come from the registry alone (BoB's Table 1).


rule backbone_tables:
    input:
        code=code("backbone_tables.py"),
    output:
        backbones=f"{RESULTS}/tables/backbones.csv",
        table1_csv=f"{RESULTS}/tables/table1.csv",
        table1_md=f"{RESULTS}/tables/table1.md",
    log:
        logfile("backbone_tables.log"),
    conda:
        "../environment.yml"
    resources:
        **job_resources("backbone_tables"),
    params:
        backbones=lambda wc: {
            b: bobench_config.canonical(BACKBONES[b]) for b in config["backbones"]
        },
    script:
        "../workflow_scripts/backbone_tables.py"
