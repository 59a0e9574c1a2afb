"""Rule report_tables: the leaderboard, the results table, BoB's Tables 1 and 2 and its appendix tables as HTML
pages for the report (bobench.jobs.report)."""

from bobench.jobs.report import report_pages
from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)
sm = snakemake  # noqa: F821
pages = report_pages(
    results=sm.input.results, overall=sm.input.overall, tasks=sm.input.tasks, intervals=sm.input.intervals,
    iqm=sm.input.iqm, table1=sm.input.table1, table2=sm.input.table2,
)
pages.write(sm.output.leaderboard, sm.output.results, sm.output.appendix, sm.output.table1, sm.output.table2)
log.info("wrote %s", ", ".join(sm.output))
