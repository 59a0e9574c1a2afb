# Stage 5: every figure, redrawn from the results table and the ranking only.


rule figures:
    input:
        results=rules.collect.output.parquet,
        overall=rules.rank.output.overall,
        tasks=rules.rank.output.tasks,
        settings=rules.rank.output.settings,
        top=rules.rank.output.top,
        intervals=rules.rank.output.intervals,
        code=code("figures.py"),
    output:
        # The report shows the PNGs; the PDFs (for papers) sit next to them.
        [
            report(
                f"{FIGURES}/{name}.png",
                caption=f"../report/{name}.rst",
                category="Figures",
                labels={"figure": name},
            )
            for name in FIGURE_NAMES
        ],
        expand(f"{FIGURES}/{{name}}.pdf", name=FIGURE_NAMES),
    log:
        logfile("figures.log"),
    conda:
        "../environment.yml"
    resources:
        **job_resources("figures"),
    params:
        ranking=options("ranking"),
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    script:
        "../workflow_scripts/figures.py"


rule published_figures:
    input:
        reference=RETRIEVAL_REFERENCE,
        table=reference_table(RETRIEVAL_REFERENCE),
        code=code("published_figures.py"),
    output:
        report(
            f"{FIGURES}/published_retrieval_mrr.png",
            caption="../report/published_retrieval_mrr.rst",
            category="Figures",
            labels={"figure": "published_retrieval_mrr"},
        ),
        f"{FIGURES}/published_retrieval_mrr.pdf",
    log:
        logfile("published_figures.log"),
    conda:
        "../environment.yml"
    resources:
        **job_resources("published_figures"),
    params:
        methods=lambda wc: published_methods(),
    script:
        "../workflow_scripts/published_figures.py"


rule retrieval_reference:
    input:
        results=rules.collect.output.parquet,
        reference=RETRIEVAL_REFERENCE,
        table=lambda wc: reference_table(RETRIEVAL_REFERENCE),
        code=code("retrieval_reference.py"),
    output:
        figure=[
            report(
                f"{FIGURES}/retrieval_vs_published.png",
                caption="../report/retrieval_vs_published.rst",
                category="Figures",
                labels={"figure": "retrieval_vs_published"},
            ),
            f"{FIGURES}/retrieval_vs_published.pdf",
        ],
        comparison=f"{RESULTS}/tables/retrieval_vs_published.csv",
        correlations=f"{RESULTS}/tables/retrieval_vs_published_rho.csv",
        markdown=f"{RESULTS}/tables/retrieval_vs_published.md",
    log:
        logfile("retrieval_reference.log"),
    conda:
        "../environment.yml"
    resources:
        **job_resources("retrieval_reference"),
    script:
        "../workflow_scripts/retrieval_reference.py"
