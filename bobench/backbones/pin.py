"""Pin unpinned direct-download checkpoints: download, hash, write the sha256 into the registry.

    python -m bobench.backbones.pin                 # every `sha256: unpinned` entry, print hashes
    python -m bobench.backbones.pin dino_rn50 --write
    python -m bobench.backbones.pin sup_cnxt_t_in1k:detection --write   # a task variant's weights

Run it on a machine with internet, compare the printed hashes with the
release's own where it publishes them, and commit the registry change.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import yaml

from bobench.backbones.weights import UNPINNED, file_sha256, resolve_checkpoint_path

DEFAULT_REGISTRY = Path(__file__).resolve().parents[2] / "config" / "backbones.yaml"


def unpinned_ids(registry: dict) -> list[str]:
    return [b for b, e in registry.items() if e.get("weights", {}).get("sha256") == UNPINNED]


def unpinned_variants(registry: dict) -> list[str]:
    """``id:task`` of every task variant whose own weights are unpinned (one per weights: detection's are
    OOD detection's too)."""
    out, seen = [], set()
    for backbone_id, entry in registry.items():
        for task, variant in (entry.get("task_variants") or {}).items():
            weights = variant.get("weights") or {}
            key = (backbone_id, repr(sorted(weights.items())))
            if weights.get("sha256") == UNPINNED and key not in seen:
                seen.add(key)
                out.append(f"{backbone_id}:{task}")
    return out


def pin_in_text(text: str, backbone_id: str, sha256: str, after: str | None = None) -> str:
    """Replace ``sha256: unpinned`` inside one entry's block of the registry text (comments kept): the first
    one, or the first after the line holding ``after`` (a task variant's url)."""
    block = re.search(rf"^{re.escape(backbone_id)}:\n(?:(?:[ #].*)?\n)*", text, flags=re.MULTILINE)
    start = 0 if block is None or after is None else block.group(0).find(after)
    if block is None or start < 0 or f"sha256: {UNPINNED}" not in block.group(0)[start:]:
        raise KeyError(
            f"{backbone_id}: no `sha256: {UNPINNED}` line in its registry entry" + (f" after {after}" if after else "")
        )
    head, tail = block.group(0)[:start], block.group(0)[start:]
    pinned = head + tail.replace(f"sha256: {UNPINNED}", f"sha256: {sha256}", 1)
    return text[: block.start()] + pinned + text[block.end() :]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backbones", nargs="*", help="ids (or id:task for a task variant) to pin (default: every unpinned one)")
    parser.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY)
    parser.add_argument("--write", action="store_true", help="write the hashes into the registry file")
    args = parser.parse_args(argv)
    text = args.registry.read_text()
    registry = yaml.safe_load(text)
    ids = args.backbones or [*unpinned_ids(registry), *unpinned_variants(registry)]
    for name in ids:
        backbone_id, _, task = name.partition(":")
        if backbone_id not in registry:
            parser.error(f"unknown backbone {backbone_id!r}")
        variants = registry[backbone_id].get("task_variants") or {}
        if task and "weights" not in variants.get(task, {}):
            parser.error(f"{backbone_id!r} has no task_variants.{task}.weights")
        weights = variants[task]["weights"] if task else registry[backbone_id]["weights"]
        path = resolve_checkpoint_path({**weights, "sha256": UNPINNED}, backbone_id)
        sha256 = file_sha256(path)
        print(f"{name}: sha256 {sha256}  ({path.stat().st_size:,} bytes, {weights.get('url', path)})")
        if args.write:
            text = pin_in_text(text, backbone_id, sha256, after=weights.get("url") if task else None)
    if args.write:
        args.registry.write_text(text)


if __name__ == "__main__":
    main()
