"""Job rank: BoB z-scores per setting → per task → overall, top-k tables, bootstrap intervals and the IQM view."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bobench.io import read_table
from bobench.options import options_from_config
from bobench.ranking import Ranking, RankingOptions, compute_ranking, write_ranking
from bobench.ranking_uncertainty import BootstrapOptions, SampleReplicates, two_level_bootstrap
from bobench.results import read_results

log = logging.getLogger(__name__)


def ranking_options(ranking: Mapping[str, Any], bootstrap: Mapping[str, Any], seed: int) -> tuple[RankingOptions, BootstrapOptions]:
    """Config sections ``ranking`` and ``bootstrap`` → the ranking's options and its bootstrap's (with the
    run's seed; the bootstrap aggregates as the ranking does)."""
    options = options_from_config(RankingOptions, ranking, where="ranking")
    return options, options_from_config(BootstrapOptions, bootstrap, where="bootstrap", seed=seed, aggregate=options.aggregate)


@dataclass
class RankedResults:
    ranking: Ranking
    intervals: pd.DataFrame
    iqm: pd.DataFrame
    samples: SampleReplicates

    def write(self, out_dir: str | Path) -> None:
        write_ranking(self.ranking, out_dir, intervals=self.intervals, iqm=self.iqm)


def rank_results(results: str | Path, replicates: str | Path, options: RankingOptions, bootstrap: BootstrapOptions) -> RankedResults:
    """The ranking of a results table, with the two-level bootstrap: test samples are resampled with the
    settings where the jobs kept their replicates (``replicates``: results/replicates.parquet)."""
    ranking = compute_ranking(read_results(results), options)
    intervals, iqm, samples = two_level_bootstrap(ranking, read_table(replicates), bootstrap)
    log.info("%d of %d settings resample their test samples too", samples.resampled.sum(), len(samples.resampled))
    log.info("overall ranking:\n%s", ranking.overall.to_string(index=False))
    return RankedResults(ranking, intervals, iqm, samples)
