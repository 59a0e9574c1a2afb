"""The rehearsal's summary and check: coverage of the planned pairs, per-rule times."""

from __future__ import annotations

import json

import pandas as pd

from bobench.rehearsal.report import coverage, markdown_report, rule_times


def test_coverage_counts_planned_pairs_and_names_the_missing():
    results = pd.DataFrame([
        {"backbone": "a", "task": "classification", "protocol": "linear_probe", "dataset": "x", "protocol_params": "{}"},
        {"backbone": "b", "task": "ood_classification", "protocol": "finetune", "dataset": "x_sketch",
         "protocol_params": json.dumps({"trained_on": "x"})},
        # a frozen detector: its setting is its protocol, and it covers the detection task
        {"backbone": "a", "task": "detection", "protocol": "frozen", "dataset": "coco", "protocol_params": "{}"},
    ])
    planned = [("linear_probe", "a", "x"), ("linear_probe", "b", "y"), ("ood", "b", "x"), ("detection", "a", "coco")]
    covered = coverage(results, planned)
    assert covered["backbone_task"] == (3, 4, [("b", "classification", "linear_probe")])
    assert covered["dataset_task"] == (3, 4, [("y", "classification", "linear_probe")])


def test_rule_times_read_snakemake_benchmarks_and_gpu_peaks(tmp_path):
    bench = tmp_path / "logs" / "benchmarks" / "finetune" / "b1"
    bench.mkdir(parents=True)
    (bench / "d1.tsv").write_text("s\th:m:s\tmax_rss\tcpu_time\n12.5\t0:00:12\t900.0\t11.0\n")
    log = tmp_path / "logs" / "finetune" / "b1"
    log.mkdir(parents=True)
    (log / "d1.log").write_text("... INFO bobench.rule.finetune: peak GPU memory: 3.25 GiB\n")
    times = rule_times(tmp_path)
    assert times.to_dict("records") == [{"rule": "finetune", "job": "b1/d1", "seconds": 12.5, "cpu_s": 11.0, "max_rss_mb": 900.0,
                                         "peak_gpu_gib": 3.25}]
    text = markdown_report("T", 60, times, {"backbone_task": (1, 1, [])}, "snakemake …")
    assert "| finetune | 1 | 12 | 11 |" in text and "| all | 1 | 12 | 11 |" in text and "3.2" in text and "backbone × task: 1 of 1" in text
