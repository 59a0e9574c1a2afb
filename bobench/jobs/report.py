"""Job report_tables: the leaderboard, the results table, BoB's Tables 1 and 2 and its appendix tables as
HTML pages for the report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bobench.io import read_table
from bobench.report_tables import appendix_html, frame_html, leaderboard_html, results_html, write_html
from bobench.results import read_results

TABLE1_NOTE = (
    "Pretraining method and algorithm, pretraining data and its size (images), and the architectures with their "
    "parameter counts (classifier excluded), regenerated from the backbone registry (BoB Table 1)."
)
TABLE2_NOTE = (
    "The top backbones per task and overall (task score in SD), for all backbones and for those under the "
    "small-model threshold; random-init baselines left out; <b>kind</b> marks the OOD rows (BoB Table 2)."
)
TABLE2_EMPTY = "No backbone has a task score yet (each setting needs two or more backbones in its pool)."


@dataclass(frozen=True)
class ReportPages:
    """The report's HTML tables, by page."""

    leaderboard: str
    results: str
    appendix: str
    table1: str
    table2: str

    def write(self, leaderboard: str | Path, results: str | Path, appendix: str | Path, table1: str | Path,
              table2: str | Path) -> None:
        for path, text in ((leaderboard, self.leaderboard), (results, self.results), (appendix, self.appendix),
                           (table1, self.table1), (table2, self.table2)):
            write_html(path, text)


def report_pages(*, results: str | Path, overall: str | Path, tasks: str | Path, intervals: str | Path, iqm: str | Path,
                 table1: str | Path, table2: str | Path) -> ReportPages:
    """The pages from the results table, the ranking files and the backbone table (paths of the rule's inputs)."""
    overall_frame = read_table(overall)
    results_frame = read_results(results)
    table2_frame = read_table(table2)
    return ReportPages(
        leaderboard=leaderboard_html(overall_frame, read_table(tasks), read_table(intervals), read_table(iqm)),
        results=results_html(results_frame),
        appendix=appendix_html(results_frame, overall_frame),
        table1=frame_html(read_table(table1), "Table 1: the backbones of this battle", TABLE1_NOTE),
        table2=frame_html(table2_frame, "Table 2: which backbone should I choose?",
                          TABLE2_NOTE if len(table2_frame) else TABLE2_EMPTY),
    )
