"""Jobs figures, published_figures and retrieval_reference: every figure, redrawn from the results table and
the ranking files, or from the published retrieval table."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bobench.figures import draw_all, plot_published_retrieval, plot_retrieval_vs_published, with_score_intervals
from bobench.io import atomic_path, read_table
from bobench.ranking import RankingOptions, read_ranking
from bobench.results import read_results
from bobench.retrieval.reference import (
    PublishedTable,
    compare_with_published,
    comparison_markdown,
    load_published,
    published_scores,
    rank_correlations,
)

log = logging.getLogger(__name__)


def _stem(path: str | Path) -> Path:
    """A figure's path without its format suffix (the plots write .png and .pdf)."""
    return Path(path).with_suffix("")


def draw_figures(results: str | Path, overall: str | Path, intervals: str | Path, options: RankingOptions,
                 out_dir: str | Path) -> list[Path]:
    """Every figure into ``out_dir``, from the results table and the ranking files next to ``overall``; the
    overall scores' bootstrap intervals (``intervals``) become the ranking figures' error bars."""
    ranking = with_score_intervals(read_ranking(Path(overall).parent, options), read_table(intervals))
    paths = draw_all(read_results(results), ranking, out_dir)
    for path in paths:
        log.info("wrote %s", path)
    return paths


def draw_published_figures(reference: str | Path, methods: Mapping[str, str], figure: str | Path) -> list[Path]:
    """The figures drawn from published numbers alone: the published retrieval table (``figure``: its PNG)."""
    published = load_published(reference)
    paths = plot_published_retrieval(published_scores(published), dict(methods), _stem(figure), metric=published.metric.upper())
    log.info("wrote %s", ", ".join(map(str, paths)))
    return paths


@dataclass
class RetrievalComparison:
    """Our retrieval results beside the published table, with the rank correlations."""

    comparison: pd.DataFrame
    correlations: pd.DataFrame
    published: PublishedTable

    def write(self, figure: str | Path, comparison: str | Path, correlations: str | Path, markdown: str | Path) -> None:
        for frame, path in ((self.comparison, comparison), (self.correlations, correlations)):
            with atomic_path(path) as tmp:
                frame.to_csv(tmp, index=False)
        with atomic_path(markdown) as tmp:
            Path(tmp).write_text(comparison_markdown(self.comparison, self.correlations, self.published))
        plot_retrieval_vs_published(self.comparison, self.correlations, _stem(figure), metric=self.published.metric.upper())
        log.info("ours vs published: %s", self.correlations.to_dict("records"))


def compare_retrieval(results: str | Path, reference: str | Path) -> RetrievalComparison:
    published = load_published(reference)
    comparison = compare_with_published(read_results(results), published)
    return RetrievalComparison(comparison, rank_correlations(comparison), published)
