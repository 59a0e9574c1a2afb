"""Benchmarks are scripts, not timed tests; here only: the GPU ones skip cleanly without a GPU, the CPU ones
that share benchmarks/demo_setup.py start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the benchmark would run for real")
@pytest.mark.parametrize("script", ["bench_zoo_gpu.py", "bench_finetune_gpu.py", "bench_detection_gpu.py"])
def test_gpu_benchmark_skips_without_a_gpu(script):
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "no CUDA device: skipping" in run.stdout


@pytest.mark.parametrize("script", ["bench_cascade_vs_mask.py", "bench_probe_defaults.py", "bench_detection_defaults.py"])
def test_benchmark_starts(script):
    """The CPU benchmarks that share benchmarks/demo_setup.py import it and bobench and read their options."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--help"], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage:")
