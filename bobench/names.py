"""The names of the workflow's figures, report tables and split labels, kept once: the rules, the library
and the tests import them from here (a leaf module, light enough for the Snakefile to read at parse time)."""

#: Figures drawn from the ranking, in the report's order; each is written as .png and .pdf.
RANKING_FIGURES = (
    "overall_ranking",
    "small_backbones",
    "zscore_heatmap",
    "task_scatter",
    "zscore_vs_scale",
    "task_correlations",
    "figure1",
    "finetune_gain",
    "matched_data",
)
#: Figures of metrics the ranking does not use, drawn from the results table itself.
RESULTS_FIGURES = ("calibration",)
#: Every figure the workflow draws.
FIGURE_NAMES = RANKING_FIGURES + RESULTS_FIGURES

#: The report's HTML tables: file stem → the label the report shows.
REPORT_TABLES = {
    "leaderboard": "leaderboard",
    "results": "results table (primary metrics)",
    "appendix": "appendix: every number per task",
    "table1": "Table 1: backbones",
    "table2": "Table 2: top backbones per task",
}

#: A prepared dataset's ``test_split`` when its test images are its val images (``bob_validation_as_test``:
#: BoB's Flowers-102 and FGVC-Aircraft, docs/protocol.md §3.1); nothing may then train on val.
TEST_SPLIT_IS_VAL = "official val"
