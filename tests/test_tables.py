"""BoB's Table 1 from the registry."""

from __future__ import annotations

import pandas as pd

from bobench.tables import backbone_rows, table1, write_backbone_tables


def test_rows_carry_computed_parameter_counts(backbone_registry):
    rows = backbone_rows({k: backbone_registry[k] for k in ("effnet_lite0_in1k", "sup_vit_b_in21k", "random_vit_b16")})
    counts = rows.set_index("backbone")["n_params"]
    assert counts["effnet_lite0_in1k"] == 3_371_008
    assert counts["sup_vit_b_in21k"] == counts["random_vit_b16"] == 85_798_656
    assert rows.set_index("backbone").loc["sup_vit_b_in21k", "resolution"] == 224


def test_table1_groups_method_algorithm_and_data(backbone_registry, tmp_path):
    grouped = table1(backbone_rows(backbone_registry))
    # Every backbone appears exactly once, supervised rows first and random init last.
    assert grouped["n_backbones"].sum() == len(backbone_registry)
    assert grouped["method"].iloc[0] == "supervised" and grouped["method"].iloc[-1] == "none"
    clip = grouped[(grouped["algorithm"] == "CLIP") & (grouped["pretrain_data"] == "LAION-2B")]
    assert clip["architectures"].item() == "ViT-B/16 (CLIP, LAION-2B) (85.8M), ViT-L/14 (CLIP, LAION-2B) (303.2M)"
    write_backbone_tables(backbone_registry, tmp_path / "b.csv", tmp_path / "t.csv", tmp_path / "t.md")
    assert pd.read_csv(tmp_path / "t.csv").shape == grouped.shape
    assert "| vision-language | CLIP | LAION-2B | 2,320.0M |" in (tmp_path / "t.md").read_text()
