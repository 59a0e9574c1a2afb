"""What a backbone registry entry names outside the registry exists, checked when the workflow is parsed:
its timm architecture and pretrained tag, its entry point's module, its local checkpoint file.

Without these checks a misspelt architecture or a wrong path passes the dry run and fails at job time in
timm's own traceback. timm's lists of architectures and pretrained tags need ``import timm`` (and so torch:
seconds), which the workflow must not pay at every parse: they are cached per timm version, in
``$XDG_CACHE_HOME/bobench`` (``~/.cache/bobench``), and read from there after the first run.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from bobench.errors import ConfigError


def _cache_file() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bobench"
    return root / f"timm-{importlib.metadata.version('timm')}-models.json"


def timm_names() -> dict[str, list[str]]:
    """``{"models": timm.list_models(), "pretrained": timm.list_pretrained()}`` of the installed timm."""
    path = _cache_file()
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    import timm

    names = {"models": sorted(timm.list_models()), "pretrained": sorted(timm.list_pretrained())}
    try:  # a cache: a read-only home only costs the import next time
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(names))
        tmp.replace(path)
    except OSError:
        pass
    return names


def _did_you_mean(value: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(value, choices, n=3)
    return f" (did you mean {', '.join(map(repr, close))}?)" if close else ""


def check_entry(where: str, entry: dict[str, Any], registry: str, standin_weights: bool) -> None:
    """One entry as a job builds it (``where``: its id, or ``id.task_variants.task``). ``standin_weights``: a
    rehearsal, whose jobs load stand-in checkpoints instead of the entry's files."""
    architecture, weights = entry["architecture"], entry["weights"]
    prefix = f"backbone registry {registry}: key '{where}"
    if architecture["library"] == "timm" and not architecture["name"].startswith("hf-hub:"):
        names = timm_names()
        name = architecture["name"]
        if name not in names["models"]:
            raise ConfigError(
                f"{prefix}.architecture.name': {name!r} is not an architecture of timm "
                f"{importlib.metadata.version('timm')}{_did_you_mean(name, names['models'])}; "
                "timm.list_models() lists them (an hf-hub:org/repo name loads one from the hub)"
            )
        tag = weights.get("tag")
        if weights["source"] == "timm" and tag and f"{name}.{tag}" not in names["pretrained"]:
            tags = sorted(p.split(".", 1)[1] for p in names["pretrained"] if p.split(".", 1)[0] == name)
            raise ConfigError(
                f"{prefix}.weights.tag': timm has no pretrained weights {name}.{tag}{_did_you_mean(tag, tags)}; "
                f"tags of {name}: {', '.join(tags) or 'none'}"
            )
    if architecture["library"] == "python":
        module = architecture["entry_point"].split(":")[0]
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise ConfigError(
                f"{prefix}.architecture.entry_point': module {module!r} of {architecture['entry_point']!r} is not "
                "importable (put its folder on PYTHONPATH, or install it)"
            )
    if weights["source"] == "file" and not standin_weights:
        path = Path(os.path.expandvars(os.path.expanduser(weights["path"])))
        if not path.exists():
            raise ConfigError(f"{prefix}.weights.path': checkpoint file {str(path)!r} does not exist")
        if not path.is_file():
            raise ConfigError(f"{prefix}.weights.path': {str(path)!r} is not a file (expected a checkpoint file)")
        if not os.access(path, os.R_OK):
            raise ConfigError(f"{prefix}.weights.path': checkpoint file {str(path)!r} is not readable")
