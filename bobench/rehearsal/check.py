"""Did a rehearsal run every task and dataset it planned, and mark everything as stand-in?

    python -m bobench.rehearsal.check results/rehearsal

Exits non-zero, naming what is missing, when the results table lacks a planned (task, dataset) or
(task, backbone) pair, a row is not marked as stand-in where the rehearsal used one, or a figure or
report table was not written. ``.ci/run`` runs it after the rehearsal's CI slice.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import yaml

from bobench.names import FIGURE_NAMES, REPORT_TABLES
from bobench.rehearsal.report import coverage


def planned_cells(results_dir: Path) -> list[tuple[str, str, str]]:
    """The cells the run planned, from the config it wrote down: every cell of its DAG, or the rehearsal's
    covering selection of them (the same function the Snakefile calls); a detection cell per detector."""
    from bobench import config as bobench_config
    from bobench.rehearsal.coverage import rehearsal_selection

    root = Path(__file__).resolve().parents[2]
    resolved = yaml.safe_load((results_dir / "config.resolved.yaml").read_text())

    def registry(kind: str) -> dict:
        return bobench_config.load_registry(bobench_config.resolve_path(resolved["registries"][kind], root),
                                            root / f"config/schemas/{kind}.schema.yaml", f"{kind[:-1]} registry")

    datasets = registry("datasets")
    cells = list(bobench_config.cells(resolved, datasets))
    detectors = bobench_config.detection_jobs(resolved, datasets, registry("backbones"))
    chosen, chosen_detectors = rehearsal_selection(resolved, datasets, cells, detectors)
    detection_tasks = {job[0] for job in detectors}
    return [cell for cell in chosen if cell[0] not in detection_tasks] + sorted({job[:3] for job in chosen_detectors})


def problems(results_dir: str | Path) -> list[str]:
    results_dir = Path(results_dir)
    found: list[str] = []
    table = results_dir / "results.csv"
    if not table.is_file():
        return [f"{table} is missing: the rehearsal did not finish"]
    results = pd.read_csv(table, keep_default_na=False)
    unmarked = results[results["standin"] == ""]
    if len(unmarked):
        found.append(f"{len(unmarked)} rows are not marked as stand-in, e.g. {unmarked.iloc[0][['backbone', 'task', 'dataset']].to_dict()}")
    for name, (got, wanted, missing) in coverage(results, planned_cells(results_dir)).items():
        if missing:
            found.append(f"{name}: {got} of {wanted} pairs have results; missing {missing}")
    resolved = yaml.safe_load((results_dir / "config.resolved.yaml").read_text())
    figures = Path(resolved["figures_dir"])
    for name in FIGURE_NAMES:
        if not (figures / f"{name}.png").is_file():
            found.append(f"figure {figures / name}.png is missing")
    for name in REPORT_TABLES:
        if not (results_dir / "report" / f"{name}.html").is_file():
            found.append(f"report table {results_dir / 'report' / name}.html is missing")
    return found


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    results_dir = Path(args[0] if args else "results/rehearsal")
    found = problems(results_dir)
    for line in found:
        print(f"rehearsal check: {line}", file=sys.stderr)
    if not found:
        print(f"rehearsal check: {results_dir} covers every planned task × dataset and task × backbone pair, "
              "every row is marked as stand-in, every figure and report table was written")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
