"""The published retrieval MRR table as reference data, and our results beside it (figure, table, Spearman ρ).

"Ours" here is tests/fixtures/FABRICATED_retrieval_results.csv: a test fixture of made-up numbers, never results.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from bobench.figures import plot_retrieval_vs_published
from bobench.retrieval.reference import (
    ALL_DATASETS,
    compare_with_published,
    comparison_markdown,
    load_published,
    rank_correlations,
)

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "config" / "reference" / "bob_retrieval_mrr_2023-05.yaml"
FABRICATED = ROOT / "tests" / "fixtures" / "FABRICATED_retrieval_results.csv"


@pytest.fixture(scope="module")
def published():
    return load_published(REFERENCE)


@pytest.fixture(scope="module")
def fabricated():
    return pd.read_csv(FABRICATED, comment="#")


def test_reference_data_is_the_published_table_with_provenance(published):
    raw = pd.read_csv(REFERENCE.parent / "bob_retrieval_mrr_2023-05.csv")
    assert raw.shape == (33, 9) and len(published.values) == 33 * 8
    assert published.metric == "mrr" and "nb_plotting.ipynb" in published.provenance["source"]
    # Spot values quoted in docs/protocol.md §8 (the notebook's table) survive the reshaping.
    value = published.values.set_index(["bob_backbone", "bob_dataset"])["published"]
    assert value["clip-resnet101", "CUB200"] == pytest.approx(0.666829)
    assert value["midas-swin2_base_384", "roxford5k"] == pytest.approx(0.690718)
    # Every BoB name maps to a registry backbone (SSCD's "resnet50_disc": the ResNeXt-101 file BoB loaded).
    unmapped = set(published.values.loc[published.values["backbone"].isna(), "bob_backbone"])
    assert unmapped == set()
    backbone = dict(zip(published.values["bob_backbone"], published.values["backbone"]))
    assert backbone["sscd-resnet50_disc"] == "sscd_rx101_disc" and backbone["sscd-resnet50_im"] == "sscd_rn50_im"
    import yaml

    registry = yaml.safe_load((ROOT / "config" / "backbones.yaml").read_text())
    assert set(published.values["backbone"].dropna()) <= set(registry)


def test_changed_or_unmapped_reference_data_is_refused(tmp_path):
    shutil.copy(REFERENCE, tmp_path / REFERENCE.name)
    table = tmp_path / "bob_retrieval_mrr_2023-05.csv"
    table.write_text((REFERENCE.parent / table.name).read_text().replace("0.666829", "0.966829"))
    with pytest.raises(ValueError, match="must not change silently"):
        load_published(tmp_path / REFERENCE.name)
    table.unlink()
    with pytest.raises(FileNotFoundError, match="is missing"):
        load_published(tmp_path / REFERENCE.name)


def test_comparison_and_rank_correlations_from_a_fabricated_table(published, fabricated):
    comparison = compare_with_published(fabricated, published)
    assert len(comparison) == 33 * 8
    pairs = comparison.dropna(subset=["ours"])
    assert len(pairs) == 6 + 6 + 5  # the fixture's MRR rows; its mAP rows are not compared
    correlations = rank_correlations(comparison).set_index("dataset")
    reference = pd.read_csv(REFERENCE.parent / "bob_retrieval_mrr_2023-05.csv").set_index("pt_arch")
    names = {"sup_rn50_in1k": "timm-resnet50", "sup_vit_b_in21k": "timm-vit_base_patch16_224_augreg_in21k_ft_in1k",
             "dino_vit_s": "timm-vit_small_patch16_224_dino", "clip_vit_b_laion": "clip-vit_base_patch16_224",
             "mae_vit_b": "mae-vit_base_patch16_224", "sup_cnxt_b_in21k": "timm-convnext_base_in22ft1k"}
    for dataset, column in (("cub200", "CUB200"), ("roxford5k", "roxford5k"), ("copydays", "Copydays")):
        ours = fabricated[(fabricated.dataset == dataset) & (fabricated.metric == "mrr")]
        expected = spearmanr(ours["value"], [reference.loc[names[b], column] for b in ours["backbone"]]).statistic
        assert correlations.loc[dataset, "spearman_rho"] == pytest.approx(expected)
        assert correlations.loc[dataset, "n_backbones"] == len(ours)
        assert correlations.loc[dataset, "published_only"] == 33 - len(ours)
    assert correlations.loc["gldv2_retrieval", "n_backbones"] == 0 and np.isnan(correlations.loc["gldv2_retrieval", "spearman_rho"])
    pooled = spearmanr(pairs["ours"], pairs["published"]).statistic
    assert correlations.loc[ALL_DATASETS, "spearman_rho"] == pytest.approx(pooled)


def test_figure_and_markdown_render(published, fabricated, tmp_path):
    comparison = compare_with_published(fabricated, published)
    correlations = rank_correlations(comparison)
    paths = plot_retrieval_vs_published(comparison, correlations, tmp_path / "retrieval_vs_published")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 10_000 for p in paths)
    from PIL import Image

    with Image.open(paths[0]) as image:
        assert image.size[0] > 1500 and image.size[1] > 800  # 4 × 2 panels at 200 dpi
    text = comparison_markdown(comparison, correlations, published)
    row = comparison[(comparison.backbone == "sup_rn50_in1k") & (comparison.dataset == "cub200")].iloc[0]
    assert f"{row['ours']:.3f} / {row['published']:.3f}" in text
    assert "– / 0.343" in text  # SSCD (ImageNet) on CUB: published only here (0.343347; not in the fabricated table)
    assert "Spearman ρ" in text and "before the 2023-11-16" in text


def test_published_scores_and_their_figure(published, tmp_path):
    """z within each dataset over the table's backbones, then the mean over datasets: BoB's retrieval ranking."""
    from bobench.figures import plot_published_retrieval
    from bobench.retrieval.reference import published_scores

    scores = published_scores(published)
    cub = scores[scores.bob_dataset == "CUB200"]
    values = cub["published"].to_numpy()
    np.testing.assert_allclose(cub["z"], (values - values.mean()) / values.std())
    top = scores.drop_duplicates("bob_backbone").sort_values("task_z", ascending=False)["bob_backbone"].head(3).tolist()
    # BoB's headline (docs/protocol.md §11): IN-21k ConvNeXt and SwinV2 lead BoB's retrieval.
    assert {"timm-convnext_base_in22ft1k", "timm-convnext_xlarge_in22ft1k"} & set(top)
    assert scores.loc[scores.bob_backbone == "mae-vit_base_patch16_224", "task_z"].iloc[0] == scores["task_z"].min()
    paths = plot_published_retrieval(scores, {"timm-resnet50": "supervised"}, tmp_path / "published")
    assert [p.suffix for p in paths] == [".png", ".pdf"]
