"""Rule rank: BoB z-scores per setting → per task → overall, top-k tables, bootstrap intervals and the IQM view."""

from pathlib import Path

import pandas as pd

from bobench.ranking import RankingOptions, compute_ranking, write_ranking
from bobench.ranking_uncertainty import BootstrapOptions, two_level_bootstrap
from bobench.results import read_results
from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)
sm = snakemake  # noqa: F821
options = RankingOptions.from_config(dict(sm.params.ranking))
ranking = compute_ranking(read_results(sm.input.results), options)
bootstrap = BootstrapOptions(n_boot=sm.params.bootstrap["n_boot"], level=sm.params.bootstrap["level"], seed=sm.params.seed,
                             aggregate=options.aggregate)
# Test samples are resampled with the settings where the jobs kept their replicates.
intervals, iqm, samples = two_level_bootstrap(ranking, pd.read_parquet(sm.input.replicates), bootstrap)
log.info("%d of %d settings resample their test samples too", samples.resampled.sum(), len(samples.resampled))
write_ranking(ranking, Path(sm.output.overall).parent, intervals=intervals, iqm=iqm)
log.info("overall ranking:\n%s", ranking.overall.to_string(index=False))
