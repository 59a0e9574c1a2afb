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

FAMILIES = ["CNN", "ViT", "hierarchical ViT"]
METHODS = ["supervised", "SSL", "vision-language", "generative", "depth", "none"]
SETTINGS = [
    ("classification", "in1k", "linear_probe", "top1"),
    ("classification", "in1k", "knn", "top1"),
    ("retrieval", "cub", "frozen", "map"),
    ("detection", "coco", "finetune", "ap"),
]


@pytest.fixture(autouse=True)
def low_dpi(monkeypatch):
    """Rendering dominates test time; resolution is irrelevant to what is checked."""
    monkeypatch.setattr(figures, "DPI", 40)


def make_results(n_backbones: int, settings=SETTINGS, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_backbones):
        method = METHODS[i % len(METHODS)]
        n_params = int(rng.integers(5_000_000, 300_000_000))
        for task, dataset, protocol, metric in settings:
            rows.append({
                "backbone": f"bb{i}", "backbone_name": f"net-{i}", "family": FAMILIES[i % 3],
                "method": method, "pretrain_data": "x", "pretrain_size": 0 if method == "none" else 10**6,
                "n_params": n_params, "task": task, "dataset": dataset, "domain": "natural",
                "protocol": protocol, "metric": metric, "value": float(rng.random()),
                "ci_low": np.nan, "ci_high": np.nan, "primary": True,
            })
    return pd.DataFrame(rows)


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


def test_the_workflow_declares_every_figure_the_library_draws():
    """rules/common.smk lists the figure rule's outputs (without importing matplotlib at parse time)."""
    import re

    text = (Path(__file__).resolve().parents[1] / "rules" / "common.smk").read_text()
    declared = re.findall(r'"(\w+)"', re.search(r"FIGURE_NAMES = \[(.*?)\]", text, re.S).group(1))
    assert declared == [*FIGURES, *RESULTS_FIGURES]
