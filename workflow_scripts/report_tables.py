"""Rule report_tables: the leaderboard, the results table, BoB's Tables 1 and 2 and its appendix tables as HTML
pages for the report."""

import pandas as pd

from bobench.report_tables import appendix_html, frame_html, leaderboard_html, results_html, write_html
from bobench.results import read_results
from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)
sm = snakemake  # noqa: F821
overall = pd.read_csv(sm.input.overall)
write_html(sm.output.leaderboard, leaderboard_html(overall, pd.read_csv(sm.input.tasks), pd.read_csv(sm.input.intervals),
                                                   pd.read_csv(sm.input.iqm)))
results = read_results(sm.input.results)
write_html(sm.output.results, results_html(results))
write_html(sm.output.appendix, appendix_html(results, overall))
write_html(sm.output.table1, frame_html(
    pd.read_csv(sm.input.table1), "Table 1: the backbones of this battle",
    "Pretraining method and algorithm, pretraining data and its size (images), and the architectures with their "
    "parameter counts (classifier excluded), regenerated from the backbone registry (BoB Table 1)."))
table2 = pd.read_csv(sm.input.table2)
write_html(sm.output.table2, frame_html(
    table2, "Table 2: which backbone should I choose?",
    "The top backbones per task and overall (task score in SD), for all backbones and for those under the "
    "small-model threshold; random-init baselines left out; <b>kind</b> marks the OOD rows (BoB Table 2)."
    if len(table2) else "No backbone has a task score yet (each setting needs two or more backbones in its pool)."))
log.info("wrote %s", ", ".join(sm.output))
