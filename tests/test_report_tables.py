"""The report's HTML tables: one row per backbone or cell, numbers from the ranking and results tables."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pandas as pd

from bobench.figures import METHOD_PALETTE
from bobench.ranking import ALL_TASKS, compute_ranking
from bobench.ranking_uncertainty import BootstrapOptions, bootstrap_scores, iqm_scores
from bobench.report_tables import appendix_html, frame_html, leaderboard_html, results_html
from synthetic_results import SETTINGS, make_results


class TableRows(HTMLParser):
    """The text of every body cell, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.in_body = self.in_cell = False

    def handle_starttag(self, tag, attrs):
        if tag == "tbody":
            self.in_body = True
        elif tag == "tr" and self.in_body:
            self.rows.append([])
        elif tag == "td" and self.in_body:
            self.in_cell = True
            self.rows[-1].append("")

    def handle_endtag(self, tag):
        self.in_cell = self.in_cell and tag != "td"
        self.in_body = self.in_body and tag != "tbody"

    def handle_data(self, data):
        if self.in_cell:
            self.rows[-1][-1] += data


def body_rows(page: str) -> list[list[str]]:
    parser = TableRows()
    parser.feed(page)
    return parser.rows


def test_leaderboard_shows_every_backbone_in_rank_order_with_its_intervals():
    results = make_results(7)
    ranking = compute_ranking(results)
    options = BootstrapOptions(n_boot=50)
    intervals = bootstrap_scores(ranking.settings, options)
    page = leaderboard_html(ranking.overall, ranking.tasks, intervals, iqm_scores(ranking.settings, options))
    rows = body_rows(page)
    assert [row[1] for row in rows] == list(ranking.overall["backbone_name"])
    overall = intervals[intervals["task"] == ALL_TASKS].set_index("backbone")
    for row, backbone, score in zip(rows, ranking.overall["backbone"], ranking.overall["score"]):
        assert row[5] == f"{score:+.2f}"
        assert row[6] == f"[{overall.loc[backbone, 'ci_low']:+.2f}, {overall.loc[backbone, 'ci_high']:+.2f}]"
    # One column per task, with that task's mean z.
    classification = ranking.tasks[ranking.tasks["task"] == "classification"].set_index("backbone")["z"]
    assert [row[9] for row in rows] == [f"{classification[b]:+.2f}" for b in ranking.overall["backbone"]]
    # The method colours are the figures'; nothing is fetched from outside the page.
    assert METHOD_PALETTE["supervised"] in page and not re.search(r"(src|href)=\"https?:", page)


def test_leaderboard_of_a_backbone_without_a_score_read_back_from_csv(tmp_path):
    """A backbone with no task score (here: one whose only setting has no other backbone) has no rank; the
    rank column read back from CSV is then float, as the report_tables job reads it (found by the rehearsal)."""
    results = make_results(5, SETTINGS[:1])
    lonely = make_results(1, SETTINGS[1:2]).assign(backbone="lonely", backbone_name="Lonely net")
    ranking = compute_ranking(pd.concat([results, lonely]))
    for name in ("overall", "tasks"):
        getattr(ranking, name).to_csv(tmp_path / f"{name}.csv", index=False)
    overall, tasks = pd.read_csv(tmp_path / "overall.csv"), pd.read_csv(tmp_path / "tasks.csv")
    assert overall["rank"].isna().any() and overall["rank"].dtype == float
    options = BootstrapOptions(n_boot=20)
    page = leaderboard_html(overall, tasks, bootstrap_scores(ranking.settings, options), iqm_scores(ranking.settings, options))
    rows = {row[1]: row for row in body_rows(page)}
    assert rows["Lonely net"][0] == "–"
    assert sorted(int(rows[f"net-{i}"][0]) for i in range(5)) == sorted(overall["rank"].dropna().astype(int))


def test_results_page_lists_each_primary_cell_once_with_a_filter_box():
    results = make_results(4).assign(
        ci_low=lambda df: df["value"] - 0.01, ci_high=lambda df: df["value"] + 0.01, dataset_name="D", n_test=100,
        test_split="official test", input_size=224, git_commit="0123456789abcdef", config_hash="feedbeef" * 4,
    )
    extra = results.assign(metric="nll", primary=False)
    page = results_html(pd.concat([results, extra]))
    rows = body_rows(page)
    assert len(rows) == len(results) and {row[5] for row in rows} == set(results["metric"])
    best = results.sort_values("value", ascending=False).iloc[0]
    assert any(row[6] == f"{100 * best['value']:.1f}" and row[11] == "0123456789" for row in rows)
    assert 'id="filter"' in page


def test_small_tables_render_every_cell():
    frame = pd.DataFrame({"task": ["classification", "retrieval"], "first": ["A (+1.00)", "B (+0.50)"], "n": [3, 4]})
    rows = body_rows(frame_html(frame, "Table 2", "note"))
    assert rows == [["classification", "A (+1.00)", "3"], ["retrieval", "B (+0.50)", "4"]]


def test_appendix_has_one_table_per_task_with_every_cell_and_the_best_of_a_sweep():
    results = make_results(3).assign(dataset_name=lambda df: df["dataset"], ci_low=0.1, ci_high=0.9)
    sweep = results[results["task"] == "detection"].assign(value=0.99)  # a second learning rate, better
    ranking = compute_ranking(pd.concat([results, sweep]))
    page = appendix_html(pd.concat([results, sweep]), ranking.overall)
    assert re.findall(r"<h2>(.*?)</h2>", page) == ["classification", "detection", "retrieval"]
    rows = body_rows(page)
    assert len(rows) == 3 * 3  # three backbones under each task
    classification = rows[:3]
    knn = results[(results["task"] == "classification") & (results["protocol"] == "knn")].set_index("backbone_name")
    # Columns: backbone, then the settings sorted (in1k / knn, in1k / linear_probe).
    assert [row[1] for row in classification] == [f"{100 * knn.loc[name, 'value']:.1f} [10.0, 90.0]" for name, *_ in classification]
    assert all(row[1] == "99.0 [10.0, 90.0]" for row in rows[3:6])
