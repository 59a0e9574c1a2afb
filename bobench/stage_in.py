"""Fetch a run's backbone weights where the network is, before its jobs go to compute nodes that have none:
``python -m bobench.stage_in --configfile config/paper.yaml`` on the submitting host.

Builds every configured backbone once on the CPU, and each task variant that loads other weights (the
detectors' DeiT and torchvision weights), with the registry's own loader: that downloads each file into its
cache (timm and hub weights into the Hugging Face cache, ``HF_HOME``; url weights into
``$BOBENCH_WEIGHTS_DIR``, by default ``~/.cache/bobench/weights``) and checks its pinned hash. Put the caches on
a filesystem the compute nodes see, and run the jobs with ``HF_HUB_OFFLINE=1``. Datasets need no stage-in:
their preparation rules are local rules (Snakefile), so they run on the submitting host.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bobench import config as bobench_config


def staged_entries(config: dict, backbones: dict) -> list[tuple[str, str | None, dict]]:
    """(backbone, task or None, entry) for each distinct set of weights the run's jobs load."""
    out, seen = [], []
    for backbone in config["backbones"]:
        for task in [None, *bobench_config.VARIANT_TASKS]:
            entry = bobench_config.task_entry(backbones[backbone], task)
            if (backbone, entry["weights"]) in seen:
                continue
            seen.append((backbone, entry["weights"]))
            out.append((backbone, task, entry))
    return out


def stage_in(configfiles: Sequence[str | Path]) -> list[str]:
    """Build each backbone of the run once (weights fetched and verified); the lines it logs."""
    from bobench.backbones.model import create_backbone
    from bobench.plan import load_battle

    battle, _, _ = load_battle(configfiles)
    lines = []
    for backbone, task, entry in staged_entries(battle.config, battle.backbones):
        source = entry["weights"]["source"]
        where = backbone if task is None else f"{backbone} ({task} variant)"
        if source == "random":
            lines.append(f"{where}: random weights, nothing to fetch")
            continue
        provenance = create_backbone(backbone, entry).provenance
        lines.append(f"{where}: {source} weights ready ({_describe(provenance)})")
    return lines


def _describe(provenance: dict) -> str:
    """The loaded weights in a few words: a checkpoint and its hash, a hub repository, timm's tag."""
    if "checkpoint" in provenance:
        return f"{provenance['checkpoint']}, sha256 {provenance['sha256'][:12]}"
    if "repo" in provenance:
        return f"{provenance['repo']}@{provenance['revision']}"
    return str(provenance.get("weights"))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bobench.stage_in", description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", nargs="+", default=[], help="the run's config files, in order (as snakemake's)")
    args = parser.parse_args(argv)
    for line in stage_in(args.configfile):
        print(line, file=sys.stdout, flush=True)


if __name__ == "__main__":
    main()
