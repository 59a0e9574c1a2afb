"""The rehearsal's caps: the paper's settings, except for images per split, batch sizes, optimisation
steps (and the linear probe's solver iterations) and loader processes, which are capped so that every job runs on a CPU in seconds to minutes.

Applied once, when the Snakefile reads the config, so that ``config.resolved.yaml`` shows the values
the jobs really got; every other setting (resolutions, schedules, augmentations, heads, learning-rate
sweeps, ranking options) stays the config's.
"""

from __future__ import annotations

import copy
from typing import Any

from bobench.errors import ConfigError

#: Keys holding a batch size (effective or micro) in each training or extraction section.
BATCH_KEYS = ("batch_size", "micro_batch", "eval_batch_size")
TRAINING_SECTIONS = ("finetune", "frozen_probe", "detection", "ood_detection")


def _cap(value: Any, cap: int | None) -> Any:
    return value if cap is None or value is None else min(value, cap)


def _cap_recipe(recipe: dict[str, Any], caps: dict[str, Any], set_defaults: bool, detector: bool = False) -> None:
    for key in BATCH_KEYS:
        if key in recipe:
            recipe[key] = _cap(recipe[key], caps["max_batch_size"])
    if detector:
        for key in ("batch_size", "micro_batch"):
            if key in recipe:
                recipe[key] = _cap(recipe[key], caps.get("max_detector_batch"))
    if "num_workers" in recipe:
        recipe["num_workers"] = _cap(recipe["num_workers"], caps["max_workers"])
    if caps["max_steps"] is not None and (set_defaults or "max_steps" in recipe):
        recipe["max_steps"] = _cap(recipe.get("max_steps") or caps["max_steps"], caps["max_steps"])


def apply_caps(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a (schema-validated) config with the rehearsal's caps applied, and its backbones narrowed
    to ``rehearsal.backbones`` where given; unchanged when the rehearsal is off. Per-backbone and
    per-dataset recipe overrides are capped too."""
    caps = config.get("rehearsal") or {}
    if not caps.get("enabled"):
        return config
    out = copy.deepcopy(config)
    only = caps.get("backbones")
    if only:
        unknown = [b for b in only if b not in config["backbones"]]
        if unknown:
            raise ConfigError(f"config key 'rehearsal.backbones': {', '.join(unknown)} not among the config's backbones "
                              f"({', '.join(config['backbones'])})")
        out["backbones"] = [b for b in config["backbones"] if b in only]
        out["task_backbones"] = {task: [b for b in chosen if b in only] for task, chosen in (config.get("task_backbones") or {}).items()}
    extraction = out.get("extraction") or {}
    extraction["batch_size"] = _cap(extraction.get("batch_size"), caps["max_batch_size"])
    extraction["num_workers"] = _cap(extraction.get("num_workers"), caps["max_workers"])
    probe = out.get("linear_probe")
    if isinstance(probe, dict) and "max_iter" in probe:
        probe["max_iter"] = _cap(probe["max_iter"], caps.get("max_solver_iterations"))
    for section in TRAINING_SECTIONS:
        recipe = out.get(section)
        if not isinstance(recipe, dict):
            continue
        # ood_detection inherits detection's recipe, caps included.
        _cap_recipe(recipe, caps, set_defaults=section != "ood_detection", detector=section == "detection")
        for group in ("overrides", "dataset_overrides"):
            for override in (recipe.get(group) or {}).values():
                # a detection override's per-setting entries (by_setting) are capped as the override
                for capped in [override, *(override.get("by_setting") or {}).values()]:
                    _cap_recipe(capped, caps, set_defaults=False, detector=section in ("detection", "ood_detection"))
    return out


def cap_splits(splits: dict[str, Any], max_images: int | None) -> dict[str, Any]:
    """A dataset's split sizes with every split capped at ``max_images`` (a split of 0 stays 0)."""
    if max_images is None:
        return splits
    capped = {}
    for name, size in splits.items():
        if size == 0:
            capped[name] = 0
        elif isinstance(size, int) and not isinstance(size, bool):
            capped[name] = min(size, max_images)
        else:  # all / null / a fraction of the pool: at most the cap
            capped[name] = max_images
    return capped
