"""Every bad config or registry stops before any job, with one message naming the file, the key, the value and
what was expected: one case per kind of fault, each the real command a user types in the repository root
(``snakemake -n --cores 2 --configfile my.yaml …``) on a small config based on config/test.yaml.

Each case stops while the Snakefile is parsed (about 2 s of CPU); the few valid inputs among them (a nested
``--config`` override) plan their jobs in a dry run. The faults Snakemake's own command line meets before the
workflow is read (a missing, empty or malformed ``--configfile``) give Snakemake's message: those cases check
that it stops with that message and nothing else runs (README: "When the input is wrong").
"""

from __future__ import annotations

import copy
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
REGISTRY = yaml.safe_load((ROOT / "config" / "backbones.yaml").read_text())
DATASETS = yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())
BYO = {"name": "mine", "family": "CNN", "method": "supervised", "pretrain_data": "mine", "pretrain_size": 1}

# A small run of the test battle's ids (config/test.yaml): what each case breaks one key of.
BASE: dict[str, Any] = {
    "backbones": ["effnet_lite0_in1k", "random_effnet_lite0"],
    "datasets": ["digits", "fashion_mnist"],
    "tasks": ["linear_probe", "knn", "finetune", "ood"],
    "dataset_splits": {
        "digits": {"train": 500, "val": 100, "test": 200},
        "fashion_mnist": {"train": 200, "val": 100, "test": 200},
    },
    "task_datasets": {"finetune": ["fashion_mnist"]},
    "ood": {"severities": [5], "sets": [{"trained_on": "fashion_mnist", "shifts": ["sketch"]}]},
}


@dataclass
class Case:
    id: str
    expect: list[str]  # substrings of the output; {file} is the config file, {tmp} the case's folder
    change: Callable[[dict], Any] | None = None  # edits a copy of BASE
    text: str | None = None  # the config file's text instead of BASE (YAML errors)
    args: str = ""  # more of the command line, e.g. --config …
    files: dict[str, Any] = field(default_factory=dict)  # more files in the case's folder (registries, tables)
    ok: bool = False  # a valid input: the dry run plans its jobs
    no_configfile: bool = False  # the command names a config file that is not there


def setting(path: str, value: Any) -> Callable[[dict], None]:
    """A change that sets one key, ``a.b.c``, of the config."""

    def change(config: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            config = config.setdefault(key, {})
        config[last] = value

    return change


def with_registry(**entries: Any) -> Callable[[dict], None]:
    """A change that adds bring-your-own backbone entries (in registry {tmp}/backbones.yaml) to the run."""

    def change(config: dict) -> None:
        config["backbones"] = [*config["backbones"], *entries]
        config["registries"] = {"backbones": "{tmp}/backbones.yaml"}

    return change


def registry_file(**entries: Any) -> dict[str, Any]:
    return {"backbones.yaml": {**REGISTRY, **{k: {**BYO, **v} for k, v in entries.items()}}}


def datasets_file(edit: Callable[[dict], None]) -> dict[str, Any]:
    datasets = copy.deepcopy(DATASETS)
    edit(datasets)
    return {"datasets.yaml": datasets}


TIMM = {"architecture": {"library": "timm", "name": "resnet18"}, "weights": {"source": "random"}}
RESULTS_HEADER = "backbone,task,dataset,protocol,metric,value,primary\n"

CASES = [
    # ---------------------------------------------------------------- types
    Case(
        "integer-given-as-float",
        ["{file}: key 'knn.k': 64.0 is not of type 'integer' (write 64", "expected an integer >= 1"],
        setting("knn.k", 64.0),
    ),
    Case("float-seed", ["{file}: key 'seed': 0.5 is not of type 'integer'", "expected an integer >= 0"], setting("seed", 0.5)),
    Case("integral-float-seed", ["key 'seed': 1.0 is not of type 'integer' (write 1"], setting("seed", 1.0)),
    Case(
        "integer-in-a-list-as-float",
        ["key 'ood.severities[0]': 5.0 is not of type 'integer' (write 5"],
        setting("ood.severities", [5.0]),
    ),
    Case(
        "number-in-quotes",
        ["key 'extraction.batch_size': '64' is not of type 'integer' (a number in quotes is text: write 64"],
        setting("extraction.batch_size", "64"),
    ),
    Case(
        "exponent-without-decimal-point",
        ["key 'finetune.lr': '1e-3' is not of type 'number' (YAML reads 1e-3 as text: write 1.0e-3"],
        text="backbones: [effnet_lite0_in1k]\ndatasets: [digits]\ntasks: [knn]\nfinetune:\n  lr: 1e-3\n",
    ),
    Case(
        "scalar-for-a-list",
        ["{file}: key 'backbones': 'effnet_lite0_in1k' is not of type 'array' (a list: write [effnet_lite0_in1k])"],
        setting("backbones", "effnet_lite0_in1k"),
    ),
    Case(
        "scalar-for-a-nested-list",
        ["key 'linear_probe.c_grid': 0.1 is not of type 'array' (a list: write [0.1])"],
        setting("linear_probe.c_grid", 0.1),
    ),
    Case("boolean-for-an-integer", ["key 'knn.k': True is not of type 'integer'"], setting("knn.k", True)),
    Case("mapping-for-a-list", ["key 'tasks': {'knn': 1} is not of type 'array'"], setting("tasks", {"knn": 1})),
    Case(
        "string-for-a-boolean",
        ["key 'linear_probe.standardize': 'yes please' is not of type 'boolean'", "expected true or false"],
        setting("linear_probe.standardize", "yes please"),
    ),
    # ---------------------------------------------------------------- bounds
    Case(
        "below-the-minimum", ["key 'extraction.batch_size': 0 is less than the minimum of 1"], setting("extraction.batch_size", 0)
    ),
    Case(
        "above-the-maximum",
        ["key 'finetune.drop_path': 2 is greater than the maximum of 1", "expected a number >= 0 and <= 1"],
        setting("finetune.drop_path", 2),
    ),
    Case(
        "outside-an-open-interval",
        ["key 'bootstrap.level': 1.5 is greater than or equal to the maximum of 1"],
        setting("bootstrap.level", 1.5),
    ),
    Case(
        "severity-out-of-range", ["key 'ood.severities[0]': 6 is greater than the maximum of 5"], setting("ood.severities", [6])
    ),
    Case(
        "split-size-not-a-size",
        ["key 'dataset_splits.digits.train': 1.5 is not valid", "exact count (int), share of the pool"],
        setting("dataset_splits.digits", {"train": 1.5}),
    ),
    Case("empty-list", ["key 'task_datasets.finetune': [] should be non-empty"], setting("task_datasets.finetune", [])),
    # ---------------------------------------------------------------- choices and keys
    Case(
        "misspelt-task",
        ["key 'tasks[0]': 'linear_prob' is not one of", "(did you mean 'linear_probe'?)"],
        setting("tasks", ["linear_prob", "knn"]),
    ),
    Case(
        "misspelt-precision",
        ["key 'extraction.precision': 'bf61' is not one of", "(did you mean 'bf16'?)"],
        setting("extraction.precision", "bf61"),
    ),
    Case("unknown-top-level-key", ["{file}: key 'seeds': unknown key 'seeds' (did you mean 'seed'?"], setting("seeds", 1)),
    Case(
        "unknown-nested-key",
        ["key 'knn.temp': unknown key 'temp' (did you mean 'temperature'?", "valid keys here: k, temperature"],
        setting("knn.temp", 0.1),
    ),
    Case(
        "unknown-override-key",
        [
            "key 'finetune.overrides.effnet_lite0_in1k.warmup_epoch': 'warmup_epoch' is not one of",
            "(did you mean 'warmup_epochs'?)",
        ],
        setting("finetune.overrides", {"effnet_lite0_in1k": {"warmup_epoch": 1}}),
    ),
    Case(
        "missing-required-key",
        ["required key 'tasks' is missing", "nothing is taken from config/config.yaml"],
        lambda c: c.pop("tasks"),
    ),
    # ---------------------------------------------------------------- ids
    Case(
        "unknown-backbone",
        [
            "{file}: key 'backbones[1]': unknown backbone 'effnet_lite0_in1' (did you mean 'effnet_lite0_in1k'?)",
            "valid backbones (config/backbones.yaml)",
        ],
        setting("backbones", ["random_effnet_lite0", "effnet_lite0_in1"]),
    ),
    Case(
        "unknown-dataset",
        ["key 'datasets[1]': unknown dataset 'fashion_mnst' (did you mean 'fashion_mnist'?)"],
        setting("datasets", ["digits", "fashion_mnst"]),
    ),
    Case("listed-twice", ["key 'datasets': listed more than once: digits"], setting("datasets", ["digits", "digits"])),
    Case(
        "task-backbones-not-in-run",
        ["key 'task_backbones.knn[0]': unknown backbone 'random_vit_s16'", "config key 'backbones'"],
        setting("task_backbones", {"knn": ["random_vit_s16"]}),
    ),
    Case(
        "task-backbones-unknown-task",
        ["key 'task_backbones.detecton': unknown task 'detecton'"],
        setting("task_backbones", {"detecton": ["effnet_lite0_in1k"]}),
    ),
    Case(
        "task-datasets-unknown-id",
        ["key 'task_datasets.finetune[0]': unknown dataset 'fashion_mnst' (did you mean 'fashion_mnist'?)"],
        setting("task_datasets", {"finetune": ["fashion_mnst"]}),
    ),
    Case(
        "finetune-override-unknown-backbone",
        ["key 'finetune.overrides.effnet_lite9_in1k': unknown backbone"],
        setting("finetune.overrides", {"effnet_lite9_in1k": {"lr": 1.0e-4}}),
    ),
    Case(
        "detection-override-unknown-backbone",
        ["key 'detection.overrides.sup_rn50': unknown backbone 'sup_rn50' (did you mean 'sup_rn50_in1k'?)"],
        setting("detection.overrides", {"sup_rn50": {"drop_path": 0.2}}),
    ),
    Case(
        "dataset-override-unknown-dataset",
        ["key 'finetune.dataset_overrides.digts': unknown dataset 'digts' (did you mean 'digits'?)"],
        setting("finetune.dataset_overrides", {"digts": {"epochs": 1}}),
    ),
    Case(
        "ood-source-not-fine-tuned",
        ["key 'ood.sets[0].trained_on': unknown dataset 'digits'", "datasets the finetune task runs on"],
        setting("ood.sets", [{"trained_on": "digits"}]),
    ),
    Case(
        "ood-set-unknown-dataset",
        ["key 'ood.sets[0].datasets[0]': unknown dataset 'imagenet_z'"],
        setting("ood.sets", [{"trained_on": "fashion_mnist", "datasets": ["imagenet_z"]}]),
    ),
    Case(
        "ood-shift-misspelt",
        ["key 'ood.sets[0].shifts[0]': 'gaussian_nois' is not one of", "(did you mean 'gaussian_noise'?)"],
        setting("ood.sets", [{"trained_on": "fashion_mnist", "shifts": ["gaussian_nois"]}]),
    ),
    Case(
        "ood-detection-set-wrong-kind",
        ["key 'ood_detection.sets[0].datasets[0]': dataset 'digits' is not an OOD detection dataset"],
        setting("ood_detection.sets", [{"trained_on": "synthetic_objects", "datasets": ["digits"]}]),
    ),
    Case(
        "split-override-unknown-dataset",
        ["key 'dataset_splits.cifar': unknown dataset 'cifar'"],
        setting("dataset_splits.cifar", {"train": 5}),
    ),
    Case(
        "rehearsal-backbone-not-in-run",
        ["key 'rehearsal.backbones[0]': unknown backbone 'sup_vit_b_in1k'"],
        setting("rehearsal.backbones", ["sup_vit_b_in1k"]),
    ),
    # ---------------------------------------------------------------- split sizes against the datasets' sizes
    Case(
        "split-larger-than-the-dataset",
        ["key 'dataset_splits.digits': splits.train = 5000 asks for 5000 samples", "of 1797", "digits has all 1797 images"],
        setting("dataset_splits.digits", {"train": 5000, "val": 100, "test": 200}),
    ),
    Case(
        "test-split-larger-than-the-official-one",
        ["key 'dataset_splits.fashion_mnist': splits.test = 20000", "the 'test' pool has 10000"],
        setting("dataset_splits.fashion_mnist", {"train": 200, "val": 100, "test": 20000}),
    ),
    Case(
        "registry-split-larger-than-the-dataset",
        ["dataset registry {tmp}/datasets.yaml: key 'digits.splits': splits.val = 2000"],
        lambda c: (c.pop("dataset_splits"), c.__setitem__("registries", {"datasets": "{tmp}/datasets.yaml"})),
        files=datasets_file(lambda d: d["digits"].__setitem__("splits", {"train": "all", "val": 2000, "test": 100})),
    ),
    # ---------------------------------------------------------------- bring-your-own backbones
    Case(
        "misspelt-timm-architecture",
        [
            "backbone registry {tmp}/backbones.yaml: key 'mine.architecture.name': 'resnet18x' is not an architecture of timm",
            "did you mean 'resnet18'",
        ],
        with_registry(mine=None),
        files=registry_file(mine={**TIMM, "architecture": {"library": "timm", "name": "resnet18x"}}),
    ),
    Case(
        "unknown-timm-pretrained-tag",
        ["key 'mine.weights.tag': timm has no pretrained weights resnet18.a1_in1", "did you mean 'a1_in1k'"],
        with_registry(mine=None),
        files=registry_file(mine={**TIMM, "weights": {"source": "timm", "tag": "a1_in1"}}),
    ),
    Case(
        "checkpoint-does-not-exist",
        ["key 'mine.weights.path': checkpoint file '{tmp}/nowhere.pth' does not exist"],
        with_registry(mine=None),
        files=registry_file(mine={**TIMM, "weights": {"source": "file", "path": "{tmp}/nowhere.pth", "sha256": "unpinned"}}),
    ),
    Case(
        "checkpoint-is-a-folder",
        ["key 'mine.weights.path': '{tmp}' is not a file"],
        with_registry(mine=None),
        files=registry_file(mine={**TIMM, "weights": {"source": "file", "path": "{tmp}", "sha256": "unpinned"}}),
    ),
    Case(
        "unknown-converter",
        ["key 'mine.weights.converter': unknown converter 'strip_modul' (did you mean 'strip_module'?)"],
        with_registry(mine=None),
        files={
            **registry_file(
                mine={
                    **TIMM,
                    "weights": {"source": "file", "path": "{tmp}/ckpt.pth", "sha256": "unpinned", "converter": "strip_modul"},
                }
            ),
            "ckpt.pth": "not read at parse time",
        },
    ),
    Case(
        "entry-point-not-importable",
        ["key 'mine.architecture.entry_point': module 'my_models' of 'my_models:build' is not importable"],
        with_registry(mine=None),
        files=registry_file(
            mine={
                "architecture": {"library": "python", "entry_point": "my_models:build"},
                "weights": {"source": "builtin"},
                "input": {"size": 64, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
            }
        ),
    ),
    Case(
        "registry-entry-bad-family",
        ["backbone registry {tmp}/backbones.yaml: key 'mine.family': 'MLP' is not one of"],
        with_registry(mine=None),
        files=registry_file(mine={**TIMM, "family": "MLP"}),
    ),
    Case(
        "registry-id-not-an-id",
        ["backbone registry {tmp}/backbones.yaml: key 'My-Net': 'My-Net' does not match", "expected a string matching"],
        setting("registries", {"backbones": "{tmp}/backbones.yaml"}),
        files=registry_file(**{"My-Net": TIMM}),
    ),
    # ---------------------------------------------------------------- results tables (redraw mode)
    Case(
        "results-table-missing-columns",
        [
            "key 'results_table': '{tmp}/results.csv' lacks the column(s) backbone_name, family",
            "that the ranking and figures read",
        ],
        setting("results_table", "{tmp}/results.csv"),
        files={"results.csv": "backbone,task\nx,knn\n"},
    ),
    Case(
        "results-table-does-not-exist",
        ["key 'results_table': no such file '{tmp}/elsewhere.csv'"],
        setting("results_table", "{tmp}/elsewhere.csv"),
    ),
    Case(
        "results-table-not-a-table",
        ["key 'results_table': '{tmp}/results.txt' is not a .csv or .parquet"],
        setting("results_table", "{tmp}/results.txt"),
        files={"results.txt": RESULTS_HEADER},
    ),
    # ---------------------------------------------------------------- YAML and files
    Case(
        "key-given-twice",
        ["{file}, line 4, column 1: key 'tasks' is given twice (first on line 3)"],
        text="backbones: [effnet_lite0_in1k]\ndatasets: [digits]\ntasks: [knn]\ntasks: [linear_probe]\n",
    ),
    Case(
        "registry-yaml-syntax-error",
        [
            "{tmp}/backbones.yaml, line 3, column 1: expected ',' or ']'",
            "while parsing a flow sequence that starts on line 2, column 9",
        ],
        setting("registries", {"backbones": "{tmp}/backbones.yaml"}),
        files={"backbones.yaml": "mine:\n  name: [unclosed\n"},
    ),
    Case(
        "registry-yaml-tab",
        ["{tmp}/backbones.yaml, line 2", "(the line holds a tab: YAML indents with spaces only)"],
        setting("registries", {"backbones": "{tmp}/backbones.yaml"}),
        files={"backbones.yaml": "mine:\n\tname: x\n"},
    ),
    Case(
        "registry-empty",
        ["backbone registry {tmp}/backbones.yaml is empty"],
        setting("registries", {"backbones": "{tmp}/backbones.yaml"}),
        files={"backbones.yaml": "# nothing yet\n"},
    ),
    Case(
        "registry-missing",
        ["backbone registry: registry file {tmp}/nowhere.yaml does not exist"],
        setting("registries", {"backbones": "{tmp}/nowhere.yaml"}),
    ),
    # Snakemake reads --configfile before the workflow: its own message, and nothing runs.
    Case(
        "config-yaml-syntax-error",
        ["Config file is not valid JSON or YAML"],
        text="backbones: [effnet_lite0_in1k\ndatasets: [digits]\n",
    ),
    Case("config-yaml-tab", ["not mix whitespace and tab indentation"], text="knn:\n\tk: 10\n"),
    Case("config-empty", ["Config file must be given as JSON or YAML with keys at top level"], text=""),
    Case("configfile-missing", ["No such file or directory: '{file}'"], no_configfile=True),
    # ---------------------------------------------------------------- command-line overrides, typed like the file
    Case("nested-override-valid", [], args="--config 'knn={k: 10, temperature: 0.05}'", ok=True),
    Case(
        "nested-override-out-of-bounds", ["--config: key 'knn.k': 0 is less than the minimum of 1"], args="--config 'knn={k: 0}'"
    ),
    Case("override-float-seed", ["--config: key 'seed': 1.5 is not of type 'integer'"], args="--config seed=1.5"),
    Case(
        "override-unknown-backbone",
        ["--config: key 'backbones[0]': unknown backbone 'effnet_lite0_in1' (did you mean 'effnet_lite0_in1k'?)"],
        args="--config 'backbones=[effnet_lite0_in1]'",
    ),
    Case("override-unknown-key", ["--config: key 'knn.kk': unknown key 'kk' (did you mean 'k'?"], args="--config 'knn={kk: 10}'"),
]


def fill(value: Any, tmp: Path) -> Any:
    """``{tmp}`` in every string of a file's content → the case's folder."""
    if isinstance(value, str):
        return value.replace("{tmp}", str(tmp))
    if isinstance(value, dict):
        return {k: fill(v, tmp) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, tmp) for v in value]
    return value


def prepare(case: Case, tmp: Path) -> tuple[Path, str]:
    """Write the case's files into ``tmp``; return its config file and its command (from the repository root)."""
    config_file = tmp / "my.yaml"
    if case.text is not None:
        config_file.write_text(case.text)
    elif not case.no_configfile:
        config = copy.deepcopy(BASE)
        config.update(data_dir=str(tmp / "data"), results_dir=str(tmp / "results"), figures_dir=str(tmp / "figures"))
        if case.change:
            case.change(config)
        config_file.write_text(yaml.safe_dump(fill(config, tmp), sort_keys=False))
    for name, content in case.files.items():
        (tmp / name).write_text(content if isinstance(content, str) else yaml.safe_dump(fill(content, tmp)))
    return config_file, f"snakemake -n --cores 2 --configfile {config_file} {case.args}"


@dataclass
class Outcome:
    config_file: Path
    folder: Path
    run: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory) -> dict[str, Outcome]:
    """Each selected case's command, run from the repository root, two at a time: a dry run is one Python
    process on one core, so a 2-core machine runs two side by side in the time of one."""
    selected = [item.callspec.params["case"] for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec")]  # fmt: skip

    def run(case: Case) -> tuple[str, Outcome]:
        folder = tmp_path_factory.mktemp(case.id)
        config_file, command = prepare(case, folder)
        done = subprocess.run([SNAKEMAKE, *shlex.split(command)[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300)
        return case.id, Outcome(config_file, folder, done)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(run, selected))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_stops_before_any_job_with_one_message(case: Case, outcomes: dict[str, Outcome]):
    config_file, tmp_path, run = outcomes[case.id].config_file, outcomes[case.id].folder, outcomes[case.id].run
    output = run.stdout + run.stderr
    if case.ok:
        assert run.returncode == 0, output[-3000:]
        assert "This was a dry-run" in output
        return
    assert run.returncode != 0, output[-3000:]
    assert "Building DAG" not in output  # stopped while the workflow was parsed: no job was planned
    assert not any((tmp_path / d).exists() for d in ("data", "results", "figures"))
    for text in case.expect:
        text = text.replace("{file}", str(config_file)).replace("{tmp}", str(tmp_path))
        assert text in output, f"{text!r} not in:\n{output[-3000:]}"


def test_enough_cases():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
