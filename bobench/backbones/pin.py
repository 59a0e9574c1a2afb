"""Pin unpinned direct-download checkpoints: download, hash, write the sha256 into the registry.

    python -m bobench.backbones.pin                 # every `sha256: unpinned` entry, print hashes
    python -m bobench.backbones.pin dino_rn50 --write

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


def pin_in_text(text: str, backbone_id: str, sha256: str) -> str:
    """Replace ``sha256: unpinned`` inside one entry's block of the registry text (comments kept)."""
    block = re.search(rf"^{re.escape(backbone_id)}:\n(?:(?:[ #].*)?\n)*", text, flags=re.MULTILINE)
    if block is None or f"sha256: {UNPINNED}" not in block.group(0):
        raise KeyError(f"{backbone_id}: no `sha256: {UNPINNED}` line in its registry entry")
    pinned = block.group(0).replace(f"sha256: {UNPINNED}", f"sha256: {sha256}", 1)
    return text[: block.start()] + pinned + text[block.end() :]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backbones", nargs="*", help="ids to pin (default: every unpinned entry)")
    parser.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY)
    parser.add_argument("--write", action="store_true", help="write the hashes into the registry file")
    args = parser.parse_args(argv)
    text = args.registry.read_text()
    registry = yaml.safe_load(text)
    ids = args.backbones or unpinned_ids(registry)
    for backbone_id in ids:
        if backbone_id not in registry:
            parser.error(f"unknown backbone {backbone_id!r}")
        weights = registry[backbone_id]["weights"]
        path = resolve_checkpoint_path({**weights, "sha256": UNPINNED}, backbone_id)
        sha256 = file_sha256(path)
        print(f"{backbone_id}: sha256 {sha256}  ({path.stat().st_size:,} bytes, {weights.get('url', path)})")
        if args.write:
            text = pin_in_text(text, backbone_id, sha256)
    if args.write:
        args.registry.write_text(text)


if __name__ == "__main__":
    main()
