"""Where a run's config comes from: its YAML files read with file, line and column in every error,
``--config`` overrides typed as in a file, and which source set a key (so a message names that file).

Snakemake reads the ``--configfile`` files itself, before the workflow starts; the workflow reads them again
here to name the file a bad key came from, and to refuse what PyYAML silently accepts (a key given twice).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from bobench.errors import ConfigError


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a mapping with the same key twice is an error (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} is given twice (first on line {seen[key]}); YAML would keep only the last",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, where: str) -> Any:
    """``text`` as YAML; an error names ``where``, the line and the column (and a tab, YAML's usual trap)."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "invalid YAML"
        if mark is None:  # pragma: no cover - PyYAML marks its parse errors
            raise ConfigError(f"{where}: invalid YAML: {problem}") from None
        lines = text.splitlines()
        line = lines[mark.line] if mark.line < len(lines) else ""
        hint = ""
        if "\t" in line or "\t" in problem:
            hint = " (the line holds a tab: YAML indents with spaces only)"
        context = error.context_mark
        if error.context and context is not None and (context.line, context.column) != (mark.line, mark.column):
            hint += f" ({error.context} that starts on line {context.line + 1}, column {context.column + 1})"
        raise ConfigError(f"{where}, line {mark.line + 1}, column {mark.column + 1}: {problem}{hint}") from None
    except yaml.YAMLError as error:  # pragma: no cover - unmarked errors are rare (encoding)
        raise ConfigError(f"{where}: invalid YAML: {error}") from None


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping (a config or a registry): a missing, unreadable, empty or
    malformed file is one message naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{what} {path}: cannot be read ({error})") from None
    data = parse_yaml(text, str(path))
    if data is None:
        raise ConfigError(f"{what} {path} is empty (expected a YAML mapping of keys)")
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: expected a YAML mapping of keys at the top level, got {type(data).__name__}")
    return data


def typed_overrides(config_args: Iterable[str] | None) -> dict[str, Any]:
    """The ``--config key=value`` options typed as in a config file.

    Snakemake types a top-level value (``seed=1``), but reads a nested one (``knn={k: 10}``) with YAML's
    base loader, which leaves every scalar a string; YAML's safe loader gives what the same text in a file
    would give."""
    typed: dict[str, Any] = {}
    for arg in config_args or ():
        key, sep, value = str(arg).partition("=")
        if not sep:
            continue  # Snakemake itself refuses an entry without '='
        typed[key] = None if value == "" else parse_yaml(value, f"--config {arg!r}")
    return typed


def merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    """Snakemake's merge of config sources: mappings key by key, anything else replaced whole."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value


def key_parts(key: str) -> list[str | int]:
    """``'ood.sets[0].datasets[1]'`` → ``['ood', 'sets', 0, 'datasets', 1]``."""
    return [int(p[1:-1]) if p.startswith("[") else p for p in re.findall(r"\[\d+\]|[^.\[\]]+", key)]


@dataclass
class ConfigSources:
    """The files of a run's config (in merge order) and its ``--config`` overrides."""

    files: list[str]
    contents: list[dict[str, Any]] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, files: Iterable[str], config_args: Iterable[str] | None = None) -> "ConfigSources":
        files = [str(f) for f in files]
        return cls(files, [read_yaml_mapping(f, "config file") for f in files], typed_overrides(config_args))

    def describe(self) -> str:
        """How a message names every source at once: ``config (a.yaml + b.yaml + --config)``."""
        parts = [*self.files, *(["--config"] if self.overrides else [])]
        return f"config ({' + '.join(parts)})" if parts else "config (--config only)"

    def origin(self, key: str) -> str:
        """The source that set ``key`` (the last one that has it, as merges go), or the schema's default."""
        parts = key_parts(key)
        named = [*zip(self.files, self.contents), ("--config", self.overrides)]
        for name, content in reversed(named):
            if _has(content, parts):
                return name
        return "the schema's default"


def _has(tree: Any, parts: list[str | int]) -> bool:
    for part in parts:
        if isinstance(part, int) or isinstance(tree, list):
            return True  # a list is replaced whole: whoever set the list set its items
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True
