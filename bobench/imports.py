"""The project modules a workflow script can import: the library files its rule depends on.

Snakemake watches a rule's script, not the library the script imports. Each rule therefore declares, as
inputs, the files of its script's import closure, so that editing a module reruns exactly the rules that can
run it. The closure is static: every ``import`` statement, at module level or inside a function (the library
imports heavy dependencies lazily), followed through project modules only. A package's ``__init__.py``
belongs to the closure of every module under it, since Python runs it first. Modules named in data rather
than code (a backbone's ``architecture.entry_point``) are added per job (:func:`entry_point_files`).

Only the standard library is imported here: the Snakefile calls this for every rule at parse time.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

PACKAGE = "bobench"


def module_file(root: Path, name: str) -> Path | None:
    """The file of project module ``name`` under ``root`` (a package's ``__init__.py``), or None."""
    base = root.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _imported_names(path: Path, module: str | None) -> set[str]:
    """Every dotted name an import statement in ``path`` may load: ``import a.b`` gives ``a.b``;
    ``from a import b`` gives ``a`` and ``a.b`` (``b`` may be a submodule). ``module`` is the file's own
    dotted name (None for a script), for relative imports."""
    names: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if module is None:
                    raise ValueError(f"{path}: a relative import outside a package")
                package = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{node.module}" if node.module else package
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@lru_cache(maxsize=None)
def _module_imports(root: Path, module: str) -> frozenset[str]:
    """The project modules that ``module`` imports directly (their parent packages included)."""
    return frozenset(_project_modules(root, _imported_names(module_file(root, module), module)))


def _project_modules(root: Path, names: Iterable[str]) -> set[str]:
    found = set()
    for name in names:
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            found.update(m for m in _with_parents(name) if module_file(root, m) is not None)
    return found


def module_closure(root: Path, modules: Iterable[str]) -> set[str]:
    """``modules`` and every project module they import, transitively."""
    root = Path(root).resolve()
    todo = sorted(_project_modules(root, modules))
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_module_imports(root, module) - seen)
    return seen


@lru_cache(maxsize=None)
def _script_closure(script: Path, root: Path) -> tuple[str, ...]:
    return tuple(sorted(module_closure(root, _imported_names(script, None))))


def script_closure(script: str | Path, root: str | Path) -> list[str]:
    """The dotted names of the project modules ``script`` can import, sorted."""
    return list(_script_closure(Path(script).resolve(), Path(root).resolve()))


def closure_files(script: str | Path, root: str | Path) -> list[str]:
    """The files of :func:`script_closure` (absolute paths, sorted by module name)."""
    root = Path(root).resolve()
    return [str(module_file(root, module)) for module in script_closure(script, root)]


def entry_point_files(backbone: Mapping[str, Any], root: str | Path) -> list[str]:
    """The project files a backbone's ``architecture.entry_point`` (``module:function``) imports, with their
    own closure; none for timm, open_clip or a module outside the project."""
    entry_point = (backbone.get("architecture") or {}).get("entry_point")
    if not entry_point:
        return []
    root = Path(root).resolve()
    modules = module_closure(root, [entry_point.partition(":")[0]])
    return [str(module_file(root, module)) for module in sorted(modules)]


def rule_scripts(workflow_dir: str | Path) -> dict[str, set[str]]:
    """Rule name → the file name(s) of its ``script:`` in ``workflow_dir/rules/*.smk`` (a rule defined in
    both branches of an ``if``, like ``collect``, has one per branch; a ``use rule … as`` copy runs its
    parent's)."""
    scripts: dict[str, set[str]] = {}
    inherited: list[tuple[str, str]] = []
    for path in sorted(Path(workflow_dir, "rules").glob("*.smk")):
        text = path.read_text()
        for block in re.split(r"\n(?=\s*(?:local)?rule \w+:)", text):
            rule = re.match(r"\s*(?:local)?rule (\w+):", block)
            script = re.search(r'script:\s*"\.\./workflow_scripts/(\w+\.py)"', block)
            if rule and script:
                scripts.setdefault(rule.group(1), set()).add(script.group(1))
        # ``use rule a as b with: …`` (no script of its own): b runs a's script.
        inherited += re.findall(r"^\s*use rule (\w+) as (\w+)", text, re.M)
    for parent, child in inherited:
        if parent in scripts and child not in scripts:
            scripts[child] = set(scripts[parent])
    return scripts


def rules_importing(module: str | Path, workflow_dir: str | Path) -> list[str]:
    """The rules whose script's import closure holds ``module`` (a file path): those an edit of it reruns."""
    workflow_dir = Path(workflow_dir).resolve()
    target = str(Path(module).resolve())
    return sorted(rule for rule, scripts in rule_scripts(workflow_dir).items()
                  if any(target in closure_files(workflow_dir / "workflow_scripts" / script, workflow_dir)
                         for script in scripts))


def main(argv: list[str] | None = None) -> int:
    """``python -m bobench.imports bobench/stats.py …``: the rules an edit of each module reruns."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bobench.imports", description=main.__doc__)
    parser.add_argument("modules", nargs="+", type=Path, help="library files, e.g. bobench/stats.py")
    parser.add_argument("--workflow", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the workflow's folder (default: this checkout)")
    args = parser.parse_args(argv)
    for module in args.modules:
        if not module.is_file():
            parser.error(f"{module}: no such file")
        rules = rules_importing(module, args.workflow)
        print(f"{module}: {', '.join(rules) if rules else 'no rule imports it'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
