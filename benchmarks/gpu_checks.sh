#!/usr/bin/env bash
# Every pending GPU check and benchmark in one run (about 10 minutes on one H100/H200); results go to
# benchmarks/results/. Run it whenever a GPU is at hand (the project's `device` tool, or any CUDA machine):
#
#   bash benchmarks/gpu_checks.sh
#
# 1. The rehearsal's CI slice on the GPU with the paper's batch sizes (config/rehearsal_gpu.yaml): per-rule
#    wall times and peak GPU memory per job -> benchmarks/results/rehearsal_gpu.md
# 2. The zoo's inference throughput and memory          -> benchmarks/results/zoo_gpu.md
# 3. Fine-tuning and detector training throughput       -> benchmarks/results/{finetune,detection}_gpu.md
#
# A machine without this project's Python packages (the device machine has torch, timm and pandas but not
# snakemake, diffusers or pycocotools) takes them as wheels in .whl/ (see the device tool's README for the
# `pip download` line); they are installed into /tmp/site first.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device: nothing to check"; exit 0
fi
mkdir -p benchmarks/results
status=0

# 1. The rehearsal slice, paper batch sizes, one GPU; a fresh folder so that every job runs.
rm -rf data/rehearsal results/rehearsal
start=$(date +%s)
timeout 360 "$PY" -m snakemake --cores 16 --resources gpu=1 --configfile config/paper.yaml config/rehearsal.yaml \
    config/rehearsal_ci.yaml config/rehearsal_gpu.yaml >/tmp/rehearsal_gpu.log 2>&1 \
    || { status=1; tail -40 /tmp/rehearsal_gpu.log; }
"$PY" benchmarks/rehearsal_report.py --results results/rehearsal --wall-s $(( $(date +%s) - start )) \
    --title "Rehearsal CI slice on $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)" \
    --out benchmarks/results/rehearsal_gpu.md || status=1

# 2-3. The throughput benchmarks, each within its own time budget.
timeout 120 "$PY" benchmarks/bench_zoo_gpu.py --out benchmarks/results/zoo_gpu.md || status=1
timeout 60 "$PY" benchmarks/bench_finetune_gpu.py --out benchmarks/results/finetune_gpu.md || status=1
timeout 60 "$PY" benchmarks/bench_detection_gpu.py --out benchmarks/results/detection_gpu.md || status=1
exit $status
