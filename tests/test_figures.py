"""Figures: every file is written (PNG + PDF), also for degenerate inputs, with no partial files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from bobench import figures
from bobench.figures import FIGURES, RESULTS_FIGURES, draw_all, plot_overall_ranking, plot_task_scatter
from bobench.ranking import compute_ranking
from synthetic_results import SETTINGS, make_results


@pytest.fixture(autouse=True)
def low_dpi(monkeypatch):
    """Rendering dominates test time; resolution is irrelevant to what is checked."""
    monkeypatch.setattr(figures, "DPI", 40)


def assert_figure_files(out_dir: Path, paths: list[Path]) -> None:
    expected = {f"{name}.{fmt}" for name in [*FIGURES, *RESULTS_FIGURES] for fmt in ("png", "pdf")}
    assert {p.name for p in paths} == expected
    assert {p.name for p in out_dir.iterdir()} == expected  # nothing partial or stray
    for path in paths:
        head = path.read_bytes()[:8]
        assert head.startswith(b"\x89PNG" if path.suffix == ".png" else b"%PDF"), path


def test_draw_all_writes_every_figure(tmp_path):
    results = make_results(8)
    paths = draw_all(results, compute_ranking(results), tmp_path / "figs")
    assert_figure_files(tmp_path / "figs", paths)


def test_a_rehearsal_s_figures_say_they_are_layout_checks(tmp_path, monkeypatch):
    """Every figure drawn from a table with stand-in rows carries the banner; a real table's never does."""
    import matplotlib.figure

    from bobench.figures import STANDIN_BANNER

    texts: list[str] = []
    original = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        texts.append(" | ".join(t.get_text() for t in fig.texts))
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    results = make_results(8)
    draw_all(results, compute_ranking(results), tmp_path / "real")
    assert texts and not any(STANDIN_BANNER in t for t in texts)
    texts.clear()
    draw_all(results.assign(standin="data+weights"), compute_ranking(results), tmp_path / "standin")
    assert texts and all(STANDIN_BANNER in t for t in texts)


@pytest.mark.parametrize(
    "results",
    [
        pytest.param(make_results(1), id="single-backbone"),
        pytest.param(make_results(5, SETTINGS[:2]), id="single-task-two-protocols"),
        pytest.param(make_results(5, SETTINGS[:1]), id="single-setting"),
        pytest.param(make_results(2, SETTINGS[2:3]), id="two-backbones"),
    ],
)
def test_degenerate_inputs_still_write_files(tmp_path, results):
    paths = draw_all(results, compute_ranking(results), tmp_path)
    assert_figure_files(tmp_path, paths)


def test_constant_setting_gives_nan_z_but_figures(tmp_path):
    results = make_results(4, SETTINGS[:1]).assign(value=0.5)  # std 0 -> every z NaN
    assert_figure_files(tmp_path, draw_all(results, compute_ranking(results), tmp_path))


def test_single_task_scatter_compares_protocols(tmp_path, monkeypatch):
    results = make_results(5, SETTINGS[:2])
    titles = []
    monkeypatch.setattr(figures, "_save", lambda fig, stem: titles.append(fig.axes[0].get_title()) or [])
    plot_task_scatter(compute_ranking(results), tmp_path / "scatter")
    assert "protocols compared" in titles[0] and "linear_probe vs knn" in titles[0]


def test_task_scatter_rejects_unknown_task(tmp_path):
    results = make_results(5)
    with pytest.raises(ValueError, match="segmentation"):
        plot_task_scatter(compute_ranking(results), tmp_path / "s", task_x="segmentation")


def test_optional_error_bars(tmp_path):
    ranking = compute_ranking(make_results(5))
    ranking.overall = ranking.overall.assign(
        score_ci_low=ranking.overall["score"] - 0.1, score_ci_high=ranking.overall["score"] + 0.2
    )
    paths = plot_overall_ranking(ranking, tmp_path / "overall")
    assert all(p.stat().st_size > 0 for p in paths)


def test_failed_save_leaves_no_partial_file(tmp_path, monkeypatch):
    ranking = compute_ranking(make_results(5))
    original = Figure.savefig

    def fail_on_pdf(self, fname, *args, **kwargs):
        if kwargs.get("format") == "pdf":
            raise RuntimeError("disk full")
        return original(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", fail_on_pdf)
    with pytest.raises(RuntimeError):
        plot_overall_ranking(ranking, tmp_path / "overall")
    assert [p.name for p in tmp_path.iterdir()] == ["overall.png"]


def test_redrawing_gives_byte_identical_files(tmp_path):
    results = make_results(4)
    ranking = compute_ranking(results)
    first = {p.name: p.read_bytes() for p in draw_all(results, ranking, tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in draw_all(results, ranking, tmp_path / "b")}
    assert first == second


def test_task_scatter_defaults_to_classification_against_the_best_covered_task():
    results = make_results(6)
    # Detection on two backbones only (the demo's case): retrieval, shared by all six, is the y axis.
    results = results[(results.task != "detection") | results.backbone.isin(["bb0", "bb1"])]
    pairs, x, y, note = figures._scatter_axes(compute_ranking(results), None, None)
    assert (x, y, note) == ("classification", "retrieval", "")
    assert len(pairs.dropna()) == 6
    _, x, y, _ = figures._scatter_axes(compute_ranking(results), None, "detection")
    assert (x, y) == ("classification", "detection")


def test_task_correlations_data():
    """Spearman's ρ between task scores over the shared backbones, from a ranking with a known task order."""
    from bobench.figures import task_correlations

    settings = [("classification", "a", "lp", "top1"), ("retrieval", "r", "frozen", "map"), ("detection", "c", "ft", "ap")]
    results = make_results(6, settings=settings)
    # Retrieval follows classification exactly; detection reverses it; one backbone lacks detection.
    cls = results.task == "classification"
    order = results[cls].set_index("backbone")["value"]
    results.loc[results.task == "retrieval", "value"] = results.loc[results.task == "retrieval", "backbone"].map(order * 0.5)
    results.loc[results.task == "detection", "value"] = results.loc[results.task == "detection", "backbone"].map(1 - order)
    results = results[~((results.task == "detection") & (results.backbone == "bb5"))]
    data = task_correlations(compute_ranking(results)).set_index(["task_a", "task_b"])
    assert data.loc[("classification", "retrieval"), "spearman_rho"] == pytest.approx(1.0)
    assert data.loc[("classification", "detection"), "spearman_rho"] == pytest.approx(-1.0)
    assert data.loc[("detection", "classification"), "n_backbones"] == 5
    assert data.loc[("retrieval", "retrieval"), "spearman_rho"] == pytest.approx(1.0)
    assert list(dict.fromkeys(data.index.get_level_values(0))) == ["classification", "detection", "retrieval"]


def test_figure1_panels_data_and_missing_task():
    """Detection vs classification has points; OOD classification is absent, so its panel is a note."""
    from bobench.figures import figure1_data

    results = make_results(6)
    ranking = compute_ranking(results)
    data = figure1_data(ranking)
    detection = data["classification", "detection"]
    expected = ranking.tasks.pivot(index="backbone", columns="task", values="z")[["classification", "detection"]].dropna()
    np.testing.assert_allclose(detection.to_numpy(), expected.to_numpy())
    assert data["classification", "ood_classification"].empty


def test_figure1_renders_with_a_missing_task(tmp_path):
    from bobench.figures import plot_figure1

    paths = plot_figure1(compute_ranking(make_results(6)), tmp_path / "figure1")
    assert [p.suffix for p in paths] == [".png", ".pdf"]


def test_scaling_fits_per_family_over_pretrained_backbones():
    """Scores rising exactly linearly in log10(params) for CNNs give slope 1/decade and ρ = 1; random init is not fitted."""
    from bobench.figures import scaling_fits

    results = make_results(9)
    results["family"] = results["backbone"].map(lambda b: "CNN" if int(b[2:]) % 2 else "ViT")
    results["method"] = results["backbone"].map(lambda b: "none" if b == "bb8" else "supervised")
    results["pretrain_size"] = results["backbone"].map(lambda b: 0 if b == "bb8" else 10**6)
    ranking = compute_ranking(results)
    cnn = ranking.overall["family"] == "CNN"
    ranking.overall["n_params"] = ranking.overall["n_params"].astype(float)
    ranking.overall.loc[cnn, "n_params"] = 10.0 ** (6 + ranking.overall.loc[cnn, "score"])
    fits = scaling_fits(ranking).set_index(["axis", "family"])
    assert fits.loc[("n_params", "CNN"), "slope_per_decade"] == pytest.approx(1.0)
    assert fits.loc[("n_params", "CNN"), "spearman_rho"] == pytest.approx(1.0)
    assert fits.loc[("n_params", "ViT"), "n_backbones"] == 4  # bb0, 2, 4, 6: bb8 is random init
    assert fits.loc[("pretrain_size", "CNN"), "n_backbones"] == 4
    assert np.isnan(fits.loc[("pretrain_size", "CNN"), "spearman_rho"])  # every pretrain_size is 10**6: no fit


def test_finetune_gain_data():
    """z(finetune) − z(linear_probe) per backbone on the datasets that have both protocols."""
    from bobench.figures import finetune_gain

    settings = [("classification", "a", "linear_probe", "top1"), ("classification", "a", "finetune", "top1"),
                ("classification", "b", "linear_probe", "top1")]
    results = make_results(6, settings=settings)
    ranking = compute_ranking(results)
    gain = finetune_gain(ranking).set_index("backbone")
    z = ranking.settings.dropna(subset=["z"]).set_index(["backbone", "dataset", "protocol"])["z"]
    for backbone, row in gain.iterrows():
        assert row["gain"] == pytest.approx(z[backbone, "a", "finetune"] - z[backbone, "a", "linear_probe"])
        assert row["n_datasets"] == 1 and row["group"] == ("CNN" if row["family"] == "CNN" else "transformer")
    assert set(gain["task"]) == {"classification"}


def test_finetune_gain_without_pairs_is_a_note(tmp_path):
    from bobench.figures import finetune_gain, plot_finetune_gain

    ranking = compute_ranking(make_results(6))  # linear probe and kNN, no fine-tuning
    assert finetune_gain(ranking).empty
    assert [p.suffix for p in plot_finetune_gain(ranking, tmp_path / "gain")] == [".png", ".pdf"]


def test_matched_data_comparison_keeps_only_matched_decades():
    from bobench.figures import matched_data_comparison

    results = make_results(6)
    methods = {"bb0": "supervised", "bb1": "SSL", "bb2": "supervised", "bb3": "vision-language", "bb4": "SSL", "bb5": "none"}
    sizes = {"bb0": 1_281_167, "bb1": 1_281_167, "bb2": 14_000_000, "bb3": 400_000_000, "bb4": 5_000_000, "bb5": 0}
    results["method"], results["pretrain_size"] = results["backbone"].map(methods), results["backbone"].map(sizes)
    ranking = compute_ranking(results)
    data = matched_data_comparison(ranking)
    # Decade 6 has supervised bb0 and SSL bb1 (and SSL bb4): matched. 10^7 has supervised bb2 only; 10^8 VL only.
    assert set(data["decade"]) == {6}
    z = ranking.tasks.set_index(["backbone", "task"])["z"]
    ssl = data[(data.task == "classification") & (data.method == "SSL")].iloc[0]
    assert ssl["n_backbones"] == 2 and ssl["mean_z"] == pytest.approx((z["bb1", "classification"] + z["bb4", "classification"]) / 2)


def test_small_backbone_ranking_keeps_pretrained_models_under_the_threshold(tmp_path):
    results = make_results(12)
    ranking = compute_ranking(results)
    small = figures.small_backbones(ranking)
    overall = ranking.overall.dropna(subset=["score"])
    expected = overall[(overall["n_params"] < 30_000_000) & (overall["method"] != "none")]
    assert list(small["backbone"]) == list(expected["backbone"]) and len(small) > 0  # in overall order
    assert list(small["rank_among_small"]) == list(range(1, len(small) + 1))
    assert figures.plot_small_backbones(ranking, tmp_path / "small")[0].stat().st_size > 1000
    # No backbone under the threshold: the figure says so instead of plotting nothing.
    big = results.assign(n_params=100_000_000)
    assert figures.small_backbones(compute_ranking(big)).empty
    assert figures.plot_small_backbones(compute_ranking(big), tmp_path / "none")[0].exists()


def test_calibration_pairs_each_classifiers_top1_with_its_ece_and_nll(tmp_path):
    results = make_results(4, [("classification", "in1k", "finetune", "top1"), ("classification", "in1k", "linear_probe", "top1")])
    trained = results[results["protocol"] == "finetune"]
    extra = pd.concat([trained.assign(metric="ece", value=0.1 * trained["value"], primary=False),
                       trained.assign(metric="nll", value=2 - trained["value"], primary=False),
                       trained.assign(task="ood_classification", dataset="in1k_r")])
    data = figures.calibration_data(pd.concat([results, extra]))
    # Fine-tuned in distribution: top-1, ECE and NLL; the probe has no ECE, the OOD rows no ECE here either.
    assert set(zip(data["protocol"], data["dataset"])) == {("finetune", "in1k")} and len(data) == 4
    assert np.allclose(data["ece"], 0.1 * data["top1"]) and np.allclose(data["nll"], 2 - data["top1"])
    assert figures.plot_calibration(pd.concat([results, extra]), tmp_path / "cal")[0].stat().st_size > 1000
    assert figures.calibration_data(results).empty  # no ECE anywhere: the figure says so
    assert figures.plot_calibration(results, tmp_path / "none")[0].exists()


def test_the_library_draws_every_figure_it_names():
    """bobench.names lists the figures for the workflow (without importing matplotlib at parse time); the
    drawing functions are keyed by those names."""
    from bobench.names import FIGURE_NAMES

    assert [*FIGURES, *RESULTS_FIGURES] == list(FIGURE_NAMES)


# --------------------------------------------------------------------------- paper scale
# Legibility at the paper's size: 51 backbones with long names × every setting of config/paper.yaml, drawn from
# a FABRICATED table of that shape (tests/paper_shaped_table.py: random numbers, layout data only).

PNG_DPI = 40  # rendering resolution in these tests (see low_dpi); sizes below are converted to the real DPI
REAL_DPI = figures.DPI  # read at import, before low_dpi lowers it
MAX_PIXELS = 8000  # at figures.DPI, each side of every saved PNG
MIN_PIXELS = 600


@pytest.fixture(scope="module")
def paper_drawn(tmp_path_factory):
    """Every figure drawn once from the paper-shaped table: name → (Figure, PNG path)."""
    from paper_shaped_table import paper_shaped_ranking, paper_shaped_results

    results = paper_shaped_results()
    ranking = paper_shaped_ranking(results)
    out = tmp_path_factory.mktemp("paper_figures")
    drawn = {}
    original = figures._save
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "DPI", PNG_DPI)
        patch.setattr(figures, "_save", lambda fig, stem: drawn.__setitem__(Path(stem).name, fig) or original(fig, stem))
        draw_all(results, ranking, out)
    return results, ranking, {name: (fig, out / f"{name}.png") for name, fig in drawn.items()}


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def rendered(fig: Figure):
    """Draw ``fig`` on an Agg canvas as it is saved (at the figure's own dpi); returns the renderer to measure with."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def tick_label_boxes(fig: Figure, axis: str, ax_index: int = 0) -> list:
    renderer = rendered(fig)
    ax = fig.axes[ax_index]
    labels = ax.get_yticklabels() if axis == "y" else ax.get_xticklabels()
    return [(label.get_text(), label.get_window_extent(renderer)) for label in labels if label.get_text()]


def text_box(text, renderer):
    """The extent of a text itself (an annotation's own extent also covers its leader line)."""
    from matplotlib.text import Text

    return Text.get_window_extent(text, renderer)


def assert_no_overlap(boxes) -> None:
    for (text_a, a), (text_b, b) in zip(boxes, boxes[1:]):
        assert not a.overlaps(b), f"tick labels overlap: {text_a!r} and {text_b!r}"


def test_paper_shaped_table_has_the_paper_layout():
    from bobench.results import COLUMNS
    from paper_shaped_table import FABRICATED, paper_shaped_results

    results = paper_shaped_results()
    assert list(results.columns) == COLUMNS and set(results["host"]) == {FABRICATED}
    assert results["backbone"].nunique() == 51
    settings = results[results["primary"]].groupby(["task", "dataset", "protocol"])["backbone"].nunique()
    assert settings["classification"].size == 16 and settings["retrieval"].size == 8
    assert settings["detection", "coco2017", "frozen"] < settings["detection", "coco2017", "finetune"] == 33
    # Four learning rates per detector: the ranking collapses the sweep, the table keeps it.
    ap = results[(results.task == "detection") & (results.metric == "ap") & (results.protocol == "finetune")]
    assert len(ap) == 4 * 33


def test_every_figure_draws_at_paper_scale_within_size_bounds(paper_drawn):
    _, _, drawn = paper_drawn
    assert set(drawn) == {*FIGURES, *RESULTS_FIGURES}
    for name, (_, path) in drawn.items():
        width, height = (side * REAL_DPI / PNG_DPI for side in png_size(path))
        assert MIN_PIXELS <= width <= MAX_PIXELS and MIN_PIXELS <= height <= MAX_PIXELS, (name, width, height)


@pytest.mark.parametrize("name", ["zscore_heatmap", "overall_ranking", "small_backbones"])
def test_paper_scale_tick_labels_do_not_overlap(paper_drawn, name):
    fig, _ = paper_drawn[2][name]
    boxes = tick_label_boxes(fig, "y")
    assert len(boxes) >= 10
    assert_no_overlap(sorted(boxes, key=lambda b: b[1].y0))
    if name == "zscore_heatmap":
        columns = tick_label_boxes(fig, "x")
        assert len(columns) == 35  # every paper setting labelled
        assert_no_overlap(sorted(columns, key=lambda b: b[1].x0))
        assert not any(y.overlaps(x) for _, y in boxes for _, x in columns)


@pytest.mark.parametrize("name", ["zscore_heatmap", "overall_ranking"])
def test_paper_scale_names_every_backbone_in_full(paper_drawn, name):
    results, ranking, drawn = paper_drawn
    fig, _ = drawn[name]
    shown = [text for text, _ in tick_label_boxes(fig, "y")]
    for _, row in ranking.overall.set_index("backbone").iterrows():
        assert f"{int(row['rank'])}. {row['backbone_name']}" in shown, row["backbone_name"]
    assert len(shown) == results["backbone"].nunique() == 51
    # Nothing drawn outside what is saved (bbox_inches="tight" keeps every label whole).
    renderer = rendered(fig)
    saved = fig.get_tightbbox(renderer).transformed(fig.dpi_scale_trans)
    for text, box in tick_label_boxes(fig, "y"):
        assert saved.x0 <= box.x0 and box.x1 <= saved.x1, text


def test_paper_scale_heatmap_groups_settings_by_task_without_cell_numbers(paper_drawn):
    fig, _ = paper_drawn[2]["zscore_heatmap"]
    ax = fig.axes[0]
    headers = [t for t in ax.texts if t.get_fontweight() == "bold"]
    assert [t.get_text().split(" · ")[0] for t in headers] == [
        "classification", "detection", "instance segmentation", "retrieval", "ood classification", "ood detection"]
    renderer = rendered(fig)
    boxes = [text_box(t, renderer) for t in headers]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])  # staggered where needed
    for header, box in zip(headers, boxes):  # a raised header's leader line crosses no header below it
        if header.arrow_patch is not None:
            x = ax.transData.transform((header.xy[0], 0))[0]
            assert not any(other.x0 < x < other.x1 and other.y1 <= box.y0 for other in boxes), header.get_text()
    assert not [t for t in ax.texts if t not in headers]  # 51 × 35 cells: colours only, no printed numbers


@pytest.mark.parametrize("name", ["figure1", "task_scatter"])
def test_paper_scale_scatter_names_few_points_without_overlap(paper_drawn, name):
    fig, _ = paper_drawn[2][name]
    renderer = rendered(fig)
    for ax in fig.axes:
        names = [t for t in ax.texts if t.get_text() and "Spearman" not in t.get_text()]
        if not names:
            continue
        assert 3 <= len(names) <= figures.NAME_BEST + figures.NAME_WORST
        boxes = [text_box(t, renderer) for t in ax.texts]
        frame = ax.get_window_extent(renderer)
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
        assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)


def test_heatmap_stays_within_bounds_for_hundreds_of_settings(tmp_path, monkeypatch):
    """Several hundred settings (e.g. many OOD shift sets): the grid is capped in width, labels still do not overlap."""
    tasks = ["classification", "detection", "retrieval", "ood_classification"]
    settings = [(tasks[i % 4], f"shift_set_{i:03d}", "finetune", "top1") for i in range(400)]
    drawn = []
    original = figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, stem: drawn.append(fig) or original(fig, stem))
    path = figures.plot_zscore_heatmap(compute_ranking(make_results(60, settings)), tmp_path / "wide")[0]
    width, height = (side * REAL_DPI / PNG_DPI for side in png_size(path))
    assert width <= MAX_PIXELS and height <= MAX_PIXELS
    columns = tick_label_boxes(drawn[0], "x")
    assert 100 <= len(columns) <= 400
    assert_no_overlap(sorted(columns, key=lambda b: b[1].x0))
    assert_no_overlap(sorted(tick_label_boxes(drawn[0], "y"), key=lambda b: b[1].y0))


def test_demo_sized_heatmap_prints_each_z(tmp_path, monkeypatch):
    """Five backbones: every cell's z is printed, as before."""
    drawn = []
    original = figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, stem: drawn.append(fig) or original(fig, stem))
    ranking = compute_ranking(make_results(5))
    figures.plot_zscore_heatmap(ranking, tmp_path / "small")
    numbers = [t.get_text() for t in drawn[0].axes[0].texts if t.get_fontweight() != "bold"]
    assert len(numbers) == ranking.settings["z"].notna().sum()


def _drawn(monkeypatch, plot, *args) -> Figure:
    figs: list[Figure] = []
    original = figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, stem: figs.append(fig) or original(fig, stem))
    plot(*args)
    return figs[-1]


def test_overall_ranking_bars_are_the_scores_best_at_the_top(tmp_path, monkeypatch):
    """What is drawn, not only that a file is written: one bar per scored backbone, its length the score."""
    from matplotlib.patches import Rectangle

    ranking = compute_ranking(make_results(8))
    ax = _drawn(monkeypatch, figures.plot_overall_ranking, ranking, tmp_path / "overall").axes[0]
    bars = sorted((p for p in ax.patches if isinstance(p, Rectangle) and p.get_height() > 0 and p.get_width() != 0),
                  key=lambda p: -p.get_y())  # top first
    scored = ranking.overall.dropna(subset=["score"])
    assert np.allclose([bar.get_width() for bar in bars], scored["score"])
    shown = [tick.get_text() for tick in sorted(ax.get_yticklabels(), key=lambda t: -t.get_position()[1])]
    assert [label.split(" ", 1)[1] for label in shown] == list(scored["backbone_name"])


def test_heatmap_cells_are_the_setting_z_scores_in_rank_order(tmp_path, monkeypatch):
    ranking = compute_ranking(make_results(6))
    fig = _drawn(monkeypatch, figures.plot_zscore_heatmap, ranking, tmp_path / "heat")
    mesh = fig.axes[0].collections[0]
    drawn = np.ma.filled(mesh.get_array().astype(float), np.nan).reshape(len(ranking.overall), -1)
    settings = ranking.settings.assign(column=lambda df: list(zip(df["task"], df["dataset"], df["protocol"])))
    columns = [tuple(c) for c in figures.heatmap_columns(ranking.settings)[["task", "dataset", "protocol"]].to_numpy()]
    expected = settings.pivot_table(index="backbone", columns="column", values="z", aggfunc="first", dropna=False)
    expected = expected.reindex(index=list(ranking.overall["backbone"]), columns=columns).to_numpy(dtype=float)
    assert np.allclose(drawn, expected, equal_nan=True)


@pytest.mark.slow
def test_committed_figures_are_what_the_code_draws_from_their_table(tmp_path):
    """The README's redraw command on figures/source/ reproduces every committed figure byte for byte (run
    from the repository root, its outputs sent to a temporary folder)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "figures", "--config",
         "results_table=figures/source/results.parquet", f"figures_dir={tmp_path / 'figures'}",
         f"results_dir={tmp_path / 'results'}"],
        cwd=root, capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    from bobench.names import FIGURE_NAMES

    committed = [f"{name}.png" for name in FIGURE_NAMES]
    stale = [name for name in committed if (root / "figures" / name).read_bytes() != (tmp_path / "figures" / name).read_bytes()]
    assert not stale, f"committed figures differ from a redraw (rerun the README's redraw command): {stale}"
