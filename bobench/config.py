"""Loading and checking the workflow config and the registries.

Every check runs when the Snakefile is parsed, before any job starts, and a
failure is one message that names the key, the bad value and the valid choices.
Structure and types are checked with JSON schemas (``config/schemas``) through
``snakemake.utils.validate``; references between config and registries
(backbone, dataset and task ids) are checked here.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from bobench.errors import ConfigError  # defined in a leaf module; still importable from here


@dataclass(frozen=True)
class TaskSpec:
    """How a config task name maps onto BoB's (task, protocol) and its headline metric."""

    name: str
    task: str
    protocol: str
    primary_metric: str
    dataset_capability: str  # what a dataset's ``tasks`` list must contain
    multilabel_metric: str | None = None  # the primary metric on multi-label datasets, where the task supports them


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("linear_probe", "classification", "linear_probe", "top1", "classification", "mean_auroc"),
        TaskSpec("knn", "classification", "knn", "top1", "classification"),
        TaskSpec("finetune", "classification", "finetune", "top1", "classification", "mean_auroc"),
        TaskSpec("frozen_probe", "classification", "frozen_probe", "top1", "classification", "mean_auroc"),
        TaskSpec("retrieval", "retrieval", "frozen", "map", "retrieval"),
        # The finetune classifiers, tested without further training on the sets of config key ood.
        TaskSpec("ood", "ood_classification", "finetune", "top1", "classification"),
        # One detector per backbone × setting × lr: box AP (detection) and mask AP (instance segmentation).
        TaskSpec("detection", "detection", "finetune", "ap", "detection"),
        TaskSpec("ood_detection", "ood_detection", "finetune", "ap50", "ood_detection"),
    )
}
# The mask rows of a detection job (not a config task of its own).
INSTANCE_SEGMENTATION = TaskSpec("instance_segmentation", "instance_segmentation", "finetune", "ap", "detection")
DETECTION_SETTINGS = ("finetune", "frozen")


def _format_path(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _strict_validator(schema: dict[str, Any]):
    """A JSON-schema validator whose ``integer`` is an int: JSON Schema counts 64.0 as an integer, and a
    float reaching ``range()`` or a seed fails deep inside a job, far from the key that set it."""
    import jsonschema

    base = jsonschema.validators.validator_for(schema)

    def is_integer(checker, instance):
        return isinstance(instance, int) and not isinstance(instance, bool)

    checker = base.TYPE_CHECKER.redefine("integer", is_integer)
    return jsonschema.validators.extend(base, type_checker=checker)(schema)


def _expected(schema: dict[str, Any]) -> str:
    """What a schema accepts, in words: its type, bounds and choices (or its description)."""
    if "enum" in schema:
        return "one of " + ", ".join(map(str, schema["enum"]))
    if "anyOf" in schema or "oneOf" in schema:
        return schema.get("description") or " or ".join(_expected(s) for s in schema.get("anyOf") or schema["oneOf"])
    if "const" in schema:
        return repr(schema["const"])
    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    words = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
             "array": "a list", "object": "a mapping", "null": "null"}
    text = " or ".join(words.get(t, t) for t in types) or "a value"
    if "pattern" in schema:
        text = f"{'a string' if text == 'a value' else text} matching {schema['pattern']}"
    bounds = [f"{op} {schema[key]}" for key, op in (("minimum", ">="), ("exclusiveMinimum", ">"),
                                                   ("maximum", "<="), ("exclusiveMaximum", "<")) if key in schema]
    if bounds:
        text += " " + " and ".join(bounds)
    if "array" in types and isinstance(schema.get("items"), dict):
        text += f" whose items are {_expected(schema['items'])}"
    return text


def _hint(error) -> str:
    """The likely slip behind a wrong value, and how to write it."""
    value, schema = error.instance, error.schema
    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if error.validator == "type" and isinstance(value, float) and value.is_integer() and "integer" in types:
        return f" (write {int(value)}: an integer has no decimal point)"
    if error.validator == "type" and isinstance(value, str) and {"number", "integer"} & set(types):
        if re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value.strip()):
            mantissa, exponent = value.lower().split("e")
            mantissa = mantissa if "." in mantissa else mantissa + ".0"
            return f" (YAML reads {value} as text: write {mantissa}e{exponent}, with a decimal point)"
        if re.fullmatch(r"[-+]?\d+(\.\d*)?", value.strip()):
            return f" (a number in quotes is text: write {value.strip()} without quotes)"
    if error.validator == "type" and "array" in types and isinstance(value, (str, int, float)):
        return f" (a list: write [{value}])"
    if error.validator == "enum" and isinstance(value, str):
        return did_you_mean(value, schema["enum"])
    return ""


def _describe_schema_error(error) -> tuple[str, str]:
    """(key, message) of a schema violation: the key as ``a.b[0]``, the value, what was expected, a hint."""
    key = _format_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted((error.schema.get("properties") or {}))
        extra = [k for k in error.instance if k not in allowed]
        unknown = extra[0] if extra else "?"
        full = unknown if key == "<top level>" else f"{key}.{unknown}"
        return full, f"unknown key {unknown!r}{did_you_mean(unknown, allowed)}; valid keys here: {', '.join(allowed)}"
    if "propertyNames" in error.absolute_schema_path:  # a key of the mapping, not a value: name it in the path
        key = str(error.instance) if key == "<top level>" else f"{key}.{error.instance}"
    schema = error.schema
    parent = error.parent
    if parent is not None and parent.validator in ("anyOf", "oneOf"):
        schema, error = parent.schema, parent
    if error.validator == "enum":  # jsonschema's message lists the choices
        return key, f"{error.message}{_hint(error)}"
    return key, f"{error.message}{_hint(error)}; expected {_expected(schema)}"


def validate_against_schema(instance: Any, schema_path: str | Path, what: str) -> None:
    """``snakemake.utils.validate`` (fills schema defaults), after a stricter check with a one-line error.

    Snakemake's own message dumps the whole schema; the check here names the offending key, its value, what
    the schema expects and the likely slip (a float for an integer, a number YAML read as text, a scalar for
    a list, a misspelt choice). The message reads ``{what} key 'a.b': ...``."""
    import jsonschema
    from snakemake.utils import validate

    schema = yaml.safe_load(Path(schema_path).read_text())
    error = jsonschema.exceptions.best_match(_strict_validator(schema).iter_errors(instance))
    if error is not None:
        if error.validator == "required":
            missing = [key for key in error.validator_value if key not in (error.instance or {})]
            where = _format_path(error.absolute_path)
            place = "" if where == "<top level>" else f" in {where!r}"
            described = error.schema.get("properties", {}).get(missing[0], {}).get("description", "see the schema")
            whole_run = ("; a config given with --configfile is the whole run: nothing is taken from config/config.yaml"
                         if what.startswith("config") else "")
            raise ConfigError(f"{what}: required key {missing[0]!r} is missing{place} ({described}){whole_run}")
        key, message = _describe_schema_error(error)
        raise ConfigError(f"{what}{' ' if what == 'config' else ': '}key {key!r}: {message}")
    try:
        validate(instance, str(schema_path), set_default=True)
    except Exception as snakemake_error:  # pragma: no cover - the strict check above passed
        raise ConfigError(f"{what}: {snakemake_error}") from None


def check_configfile_options(argv: Iterable[str]) -> None:
    """Snakemake keeps only the last ``--configfile`` option, silently: ``--configfile a.yaml --configfile
    b.yaml`` reads b.yaml alone. An overlay (config/rehearsal.yaml) is meant to go after a config, so say so."""
    options = [arg for arg in argv if arg in ("--configfile", "--configfiles")]
    if len(options) > 1:
        raise ConfigError(
            f"{options[0]} is given {len(options)} times, and Snakemake would read only the files of the last one; "
            "list every file after one option, in order: --configfile config/paper.yaml config/rehearsal.yaml"
        )


def write_resolved_config(path: str | Path, config: dict[str, Any], sources: list[str]) -> None:
    """The config a run got, as YAML that ``--configfile`` accepts, headed by where it came from."""
    from bobench.io import atomic_path

    header = "".join(
        [
            "# The config this run got: the files below merged in order, then every key they leave out\n",
            "# filled with its default from config/schemas/config.schema.yaml.\n",
            *(f"#   {source}\n" for source in sources or ["(no file: --config only)"]),
        ]
    )
    with atomic_path(path) as tmp:
        tmp.write_text(header + yaml.safe_dump(dict(config), sort_keys=True, default_flow_style=None, width=120))


def resolve_path(path: str | Path, workflow_dir: str | Path) -> Path:
    """A relative registry path is looked up in the working directory first,
    then in the workflow's own folder (so ``--directory elsewhere`` still finds
    the shipped registries)."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    return Path(workflow_dir) / path


def load_registry(path: str | Path, schema_path: str | Path, what: str) -> dict[str, dict[str, Any]]:
    """A registry file (backbones, datasets), its structure checked by its schema: the one reader of both.
    What a schema cannot check (converter and loader names in the code) :func:`check_config` checks."""
    from bobench.config_sources import read_yaml_mapping

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what}: registry file {path} does not exist")
    registry = read_yaml_mapping(path, what)  # YAML errors with line and column; a mapping of id → entry
    validate_against_schema(registry, schema_path, f"{what} {path}")
    return registry


def did_you_mean(value: Any, choices: Iterable[Any]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice (spelling, or a choice that ``value`` begins), else ''."""
    choices = [str(c) for c in choices]
    close = difflib.get_close_matches(str(value), choices, n=1)
    if not close and len(str(value)) >= 3:
        close = [c for c in choices if c.startswith(str(value))][:1]
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown(kind: str, key: str, value: Any, valid: Iterable[str], where: str, prefix: str = "config key") -> ConfigError:
    valid = sorted(valid)
    hint = did_you_mean(value, valid)
    return ConfigError(f"{prefix} {key!r}: unknown {kind} {value!r}{hint}; valid {kind}s ({where}): {', '.join(valid)}")


def _check_results_table(config: dict[str, Any]) -> None:
    """Redraw mode's table must exist, be a results table file, and not be the one collect writes."""
    table = config.get("results_table")
    if not table:
        return
    path = Path(table)
    if path.suffix not in (".csv", ".parquet"):
        raise ConfigError(f"config key 'results_table': {table!r} is not a .csv or .parquet results table")
    if not path.is_file():
        raise ConfigError(f"config key 'results_table': no such file {table!r} (an existing results.csv or .parquet)")
    own = [Path(config["results_dir"]) / f"results.{ext}" for ext in ("csv", "parquet")]
    if any(path.resolve() == p.resolve() for p in own):
        raise ConfigError(
            f"config key 'results_table': {table!r} is the table this workflow writes; to redraw a finished run "
            f"use `snakemake figures`, or copy the table elsewhere and point results_table at the copy"
        )
    columns = _table_columns(path)
    from bobench.ranking import REQUIRED_COLUMNS  # pandas: imported in redraw mode only

    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ConfigError(
            f"config key 'results_table': {table!r} lacks the column(s) {', '.join(missing)} that the ranking and "
            f"figures read; expected a results.csv or results.parquet of this workflow (columns {', '.join(REQUIRED_COLUMNS)})"
        )


def _table_columns(path: Path) -> list[str]:
    """The column names of a results table, from its header (csv) or schema (parquet): no rows are read."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        import csv

        with path.open(newline="", encoding="utf-8") as handle:
            return next(csv.reader(handle), [])
    except Exception as error:  # an unreadable table: say so, with the reader's words
        raise ConfigError(f"config key 'results_table': cannot read {str(path)!r} as a results table ({error})") from None


def check_config(config: dict[str, Any], backbones: dict[str, Any], datasets: dict[str, Any]) -> None:
    """Cross-check config ids against the registries and the task table."""
    for i, backbone in enumerate(config["backbones"]):
        if backbone not in backbones:
            raise _unknown("backbone", f"backbones[{i}]", backbone, backbones, config["registries"]["backbones"])
    for i, dataset in enumerate(config["datasets"]):
        if dataset not in datasets:
            raise _unknown("dataset", f"datasets[{i}]", dataset, datasets, config["registries"]["datasets"])
    for i, task in enumerate(config["tasks"]):
        if task not in TASKS:
            raise _unknown("task", f"tasks[{i}]", task, TASKS, "bobench.config.TASKS")
    _check_results_table(config)
    for key in ("backbones", "datasets", "tasks"):
        duplicates = sorted({x for x in config[key] if config[key].count(x) > 1})
        if duplicates:
            raise ConfigError(f"config key {key!r}: listed more than once: {', '.join(duplicates)}")
    for section in ("finetune", "detection", "ood_detection"):
        for backbone in (config.get(section) or {}).get("overrides") or {}:
            if backbone not in backbones:
                raise _unknown("backbone", f"{section}.overrides.{backbone}", backbone, backbones, config["registries"]["backbones"])
    for dataset in (config.get("finetune") or {}).get("dataset_overrides") or {}:
        if dataset not in config["datasets"]:
            raise _unknown("dataset", f"finetune.dataset_overrides.{dataset}", dataset, config["datasets"], "config key 'datasets'")
    for key, kind, pool in (("task_datasets", "dataset", "datasets"), ("task_backbones", "backbone", "backbones")):
        for task, chosen in (config.get(key) or {}).items():  # a task run on a subset of the run's ids
            if task not in config["tasks"]:
                raise _unknown("task", f"{key}.{task}", task, config["tasks"], "config key 'tasks'")
            for i, item in enumerate(chosen):
                if item not in config[pool]:
                    raise _unknown(kind, f"{key}.{task}[{i}]", item, config[pool], f"config key '{pool}'")
    for i, backbone in enumerate((config.get("rehearsal") or {}).get("backbones") or []):
        if backbone not in config["backbones"]:
            raise _unknown("backbone", f"rehearsal.backbones[{i}]", backbone, config["backbones"], "config key 'backbones'")
    split_datasets = [*config["datasets"], *(d for sets in detection_sets(config).values() for d in sets)]
    for dataset in config.get("dataset_splits") or {}:
        if dataset not in split_datasets:
            raise _unknown("dataset", f"dataset_splits.{dataset}", dataset, split_datasets,
                           "config key 'datasets' and the OOD detection sets")
    _check_ood(config, datasets)
    _check_ood_detection(config, datasets)
    _check_registry_entries(config, backbones, datasets)
    # A dataset that does not support a task simply has no cell for it (see cells()).
    if not list(cells(config, datasets)):
        raise ConfigError("config: the chosen datasets support none of the chosen tasks; nothing to run")


def _ood_sources(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """config key ``ood.sets`` as trained_on → its item."""
    return {item["trained_on"]: item for item in (config.get("ood") or {}).get("sets") or []}


def _check_ood(config: dict[str, Any], datasets: dict[str, Any]) -> None:
    """``ood`` needs fine-tuned classifiers of each source dataset, and OOD datasets from the registry."""
    if "ood" in config["tasks"] and "finetune" not in config["tasks"]:
        raise ConfigError("config key 'tasks': 'ood' evaluates the fine-tuned classifiers, so 'finetune' must be listed too")
    finetuned = [d for task, _, d in cells({**config, "tasks": ["finetune"]}, datasets)]
    items = (config.get("ood") or {}).get("sets") or []
    sources = [item["trained_on"] for item in items]
    for i, (source, item) in enumerate(zip(sources, items)):
        key = f"ood.sets[{i}]"
        if sources.count(source) > 1:
            raise ConfigError(f"config key 'ood.sets': trained_on {source!r} is listed more than once")
        if "ood" in config["tasks"] and source not in finetuned:
            raise _unknown("dataset", f"{key}.trained_on", source, set(finetuned), "datasets the finetune task runs on")
        if datasets.get(source, {}).get("multilabel"):
            raise ConfigError(f"config key '{key}.trained_on': OOD classification needs a single-label dataset, not {source!r}")
        for j, dataset in enumerate(item.get("datasets") or []):
            if dataset not in datasets:
                raise _unknown("dataset", f"{key}.datasets[{j}]", dataset, datasets, config["registries"]["datasets"])
            if "ood" not in datasets[dataset].get("tasks", []):
                raise ConfigError(
                    f"config key '{key}.datasets[{j}]': dataset {dataset!r} is not an OOD test set "
                    f"(its registry entry's tasks {datasets[dataset].get('tasks')} lack 'ood')"
                )


def _check_ood_detection(config: dict[str, Any], datasets: dict[str, Any]) -> None:
    """``ood_detection.sets``: trained on a run dataset able to train detectors, tested on registry detection sets."""
    section = config.get("ood_detection") or {}
    recipe_keys = set((config.get("detection") or {})) | {"sets"}
    for key in section:
        if key not in recipe_keys:
            raise _unknown("key", f"ood_detection.{key}", key, recipe_keys, "the keys of config section 'detection'")
    sources = [item["trained_on"] for item in section.get("sets") or []]
    for i, item in enumerate(section.get("sets") or []):
        key = f"ood_detection.sets[{i}]"
        if sources.count(item["trained_on"]) > 1:
            raise ConfigError(f"config key 'ood_detection.sets': trained_on {item['trained_on']!r} is listed more than once")
        for name, dataset in [("trained_on", item["trained_on"]), *((f"datasets[{j}]", d) for j, d in enumerate(item["datasets"]))]:
            if dataset not in datasets:
                raise _unknown("dataset", f"{key}.{name}", dataset, datasets, config["registries"]["datasets"])
            if "ood_detection" not in datasets[dataset].get("tasks", []):
                raise ConfigError(
                    f"config key '{key}.{name}': dataset {dataset!r} is not an OOD detection dataset "
                    f"(its registry entry's tasks {datasets[dataset].get('tasks')} lack 'ood_detection')"
                )
        if "ood_detection" in config["tasks"] and item["trained_on"] not in config["datasets"]:
            raise _unknown("dataset", f"{key}.trained_on", item["trained_on"], config["datasets"], "config key 'datasets'")


def detection_sets(config: dict[str, Any]) -> dict[str, list[str]]:
    """OOD detection: training dataset → the registry datasets its detectors are tested on."""
    return {item["trained_on"]: list(item["datasets"]) for item in (config.get("ood_detection") or {}).get("sets") or []}


def detection_recipe(config: dict[str, Any], task: str, backbone: str | None = None,
                     setting: str | None = None) -> dict[str, Any]:
    """The training recipe of a detection task: section ``detection``, overridden by ``ood_detection`` for that
    task, then by the task's ``overrides`` of ``backbone`` (BoB's per-backbone drop path and Stable Diffusion's
    single scale, docs/protocol.md §4), then by that override's ``by_setting`` entry for ``setting`` (BoB's
    images per step of fine-tuned ConvNeXt-B, SwinV2-B, MiDaS-B, SD and SAM); without a backbone, the task's
    common recipe."""
    recipe = dict(config.get("detection") or {})
    if task == "ood_detection":
        recipe.update({k: v for k, v in (config.get("ood_detection") or {}).items() if k != "sets"})
    overrides = recipe.pop("overrides", None) or {}
    if backbone is not None:
        override = dict(overrides.get(backbone) or {})
        per_setting = override.pop("by_setting", None) or {}
        recipe.update(override)
        if setting is not None:
            recipe.update(per_setting.get(setting) or {})
    return canonical(recipe)


def detection_jobs(config: dict[str, Any], datasets: dict[str, Any], backbones: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """Every detector to train: (task, backbone, dataset, setting, lr) over the cells of the detection tasks.

    Random-init backbones have nothing to freeze: they run the finetune setting only (as in BoB).
    """
    jobs = []
    for task, backbone, dataset in cells(config, datasets):
        if task not in ("detection", "ood_detection"):
            continue
        recipe = detection_recipe(config, task)
        settings = recipe.get("settings", list(DETECTION_SETTINGS))
        if backbones[backbone]["weights"]["source"] == "random":
            settings = [s for s in settings if s == "finetune"]
        for setting in settings:
            for lr in recipe.get("lrs", []):
                jobs.append((task, backbone, dataset, setting, lr_token(lr)))
    return jobs


def lr_token(lr: float) -> str:
    """How a learning rate appears in file names (``float(token) == lr``)."""
    return f"{float(lr):g}"


def ood_plan(config: dict[str, Any]) -> dict[str, list[Any]]:
    """Per source dataset (the one a classifier was fine-tuned on), its OOD test sets (bobench.ood.OODSet)."""
    from bobench.ood import plan_ood_sets

    if "ood" not in config["tasks"]:
        return {}
    severities = (config.get("ood") or {}).get("severities", [1, 2, 3, 4, 5])
    return {
        source: plan_ood_sets(source, item.get("datasets") or [], item.get("shifts") or [], severities)
        for source, item in _ood_sources(config).items()
    }


def _check_registry_entries(config: dict[str, Any], backbones: dict[str, Any], datasets: dict[str, Any]) -> None:
    """What the schemas cannot know: converter and loader names exist in the code (task variants included)."""
    from bobench.backbones.converters import CONVERTERS
    from bobench.byo_checks import check_entry
    from bobench.datasets.kinds import validate_dataset_entry
    from bobench.datasets.prepared import plan_splits
    from bobench.datasets.sources import LOADERS
    from bobench.rehearsal.needs import needs_standin_data, needs_standin_weights

    rehearsal = bool((config.get("rehearsal") or {}).get("enabled"))
    for backbone in config["backbones"]:
        for task in [None, *(backbones[backbone].get("task_variants") or {})]:
            entry = task_entry(backbones[backbone], task)
            where = backbone if task is None else f"{backbone}.task_variants.{task}"
            if entry["architecture"]["library"] == "python":
                missing = [k for k in ("size", "mean", "std") if k not in (entry.get("input") or {})]
                if missing:
                    raise ConfigError(
                        f"backbone registry {config['registries']['backbones']}: key '{where}.input' needs {', '.join(missing)}: an entry-point "
                        "architecture has no default eval transform to take them from"
                    )
            converter = entry["weights"].get("converter")
            if converter is not None and converter not in CONVERTERS:
                raise _unknown(
                    "converter", f"{where}.weights.converter", converter, CONVERTERS, "bobench.backbones.converters",
                    prefix=f"backbone registry {config['registries']['backbones']}: key",
                )
            check_entry(where, entry, config["registries"]["backbones"], rehearsal and needs_standin_weights(entry))
    used = [*config["datasets"], *(d for sets in detection_sets(config).values() for d in sets)]
    for dataset in used:
        try:
            validate_dataset_entry(dataset, dataset_entry(config, datasets, dataset))
        except ValueError as error:
            raise ConfigError(f"dataset registry {config['registries']['datasets']}: {error}") from None
        entry = dataset_entry(config, datasets, dataset)
        pools = LOADERS.pool_sizes.get(entry["source"]["loader"])  # a published dataset's fixed sizes
        if pools and entry.get("splits") and not (rehearsal and needs_standin_data(entry)):
            try:
                plan_splits(pools, entry["splits"])
            except ValueError as error:
                sizes = ", ".join(f"{pool} {n}" for pool, n in pools.items())
                known = f"{dataset} has {sizes} images ({'no official split' if 'all' in pools else 'official splits'}; test and val are drawn first)"
                if dataset in (config.get("dataset_splits") or {}):
                    raise ConfigError(f"config key 'dataset_splits.{dataset}': {error}: {known}") from None
                raise ConfigError(
                    f"dataset registry {config['registries']['datasets']}: key '{dataset}.splits': {error}: {known}"
                ) from None
        source = datasets[dataset]["source"].get("from_dataset")
        if source is not None and source not in datasets:
            raise _unknown("dataset", f"{dataset}.source.from_dataset", source, datasets, config["registries"]["datasets"],
                           prefix=f"dataset registry {config['registries']['datasets']}: key")


def cells(config: dict[str, Any], datasets: dict[str, Any]) -> Iterable[tuple[str, str, str]]:
    """Every (task, backbone, dataset) the run evaluates: each task on the datasets that support
    it, narrowed by ``task_datasets`` where the config names a subset for the task."""
    for task in config["tasks"]:
        if task == "ood":  # one cell per fine-tuned classifier that has OOD sets
            for _, backbone, dataset in cells({**config, "tasks": ["finetune"]}, datasets):
                if dataset in _ood_sources(config):
                    yield task, backbone, dataset
            continue
        chosen = (config.get("task_datasets") or {}).get(task, config["datasets"])
        task_backbones = (config.get("task_backbones") or {}).get(task, config["backbones"])
        for dataset in config["datasets"]:
            if datasets[dataset].get("multilabel") and not TASKS[task].multilabel_metric:
                continue  # kNN and retrieval need one class per image
            if task == "ood_detection" and dataset not in detection_sets(config):
                continue  # an OOD detection cell is a training set with test sets
            if dataset in chosen and TASKS[task].dataset_capability in datasets[dataset].get("tasks", []):
                for backbone in config["backbones"]:
                    if backbone in task_backbones:
                        yield task, backbone, dataset


def dataset_entry(config: dict[str, Any], datasets: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The registry entry with the run's split-size override applied."""
    entry = dict(datasets[dataset])
    override = (config.get("dataset_splits") or {}).get(dataset)
    if override:
        entry["splits"] = {**(entry.get("splits") or {}), **override}
    rehearsal = config.get("rehearsal") or {}
    if rehearsal.get("enabled") and entry.get("splits"):
        from bobench.rehearsal.caps import cap_splits

        detection = {"detection", "ood_detection"} & set(entry.get("tasks") or ())
        cap = rehearsal.get("max_detection_images_per_split") if detection else None
        entry["splits"] = cap_splits(entry["splits"], cap or rehearsal.get("max_images_per_split"))
    source = entry.get("source") or {}
    if config.get("bob_validation_as_test") and "bob_test_split" in source:
        # The original code's choice: evaluate on the official validation split (Flowers-102, Aircraft).
        entry["source"] = {**source, "test_split": source["bob_test_split"]}
    return canonical(entry)


# Registry fields that change the features; the others (name, method, …) only
# change tables and figures, so editing them reruns only the aggregates.
FEATURE_FIELDS = ("architecture", "weights", "input", "family", "features")


def canonical(value: Any) -> Any:
    """Recursively key-sorted copy. Snakemake compares params by their text, so
    reordering keys in a YAML file must not look like a change."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


def feature_spec(entry: dict[str, Any]) -> dict[str, Any]:
    return canonical({key: entry[key] for key in FEATURE_FIELDS if key in entry})


def display_spec(entry: dict[str, Any]) -> dict[str, Any]:
    return canonical({key: value for key, value in entry.items()
                      if key not in ("architecture", "weights", "input", "features", "task_variants")})


#: The tasks whose jobs build a backbone's ``task_variants`` entry (the only ones the registry schema allows).
VARIANT_TASKS = ("detection", "ood_detection", "retrieval")


def task_entry(entry: dict[str, Any], task: str | None) -> dict[str, Any]:
    """A registry entry as the jobs of ``task`` build it (docs/protocol.md §2.2): its ``task_variants[task]``
    replaces the entry's ``architecture``, ``weights`` and ``input``, each one it names as a whole (BoB's
    detection code loads DeiT ViTs, torchvision ResNets and FB's non-EMA ConvNeXts, and prompts Stable
    Diffusion with "object detection"; its retrieval code loads the IN-21k→1k ConvNeXt-B). ``task=None``, or
    a task without a variant: the entry's own. Never the variants themselves."""
    out = {key: value for key, value in entry.items() if key != "task_variants"}
    if task is not None:
        out.update((entry.get("task_variants") or {}).get(task) or {})
    return out


def probe_spec(entry: dict[str, Any]) -> dict[str, Any]:
    """What a frozen-probe job builds: the feature fields and the head BoB's rule gives the entry
    (:func:`bobench.backbones.probe_head.probe_head`, docs/protocol.md §3.3)."""
    from bobench.backbones.probe_head import probe_head

    return canonical({**feature_spec(entry), "probe_head": probe_head(entry)})


def variant_weights_task(entry: dict[str, Any], task: str | None) -> str | None:
    """Whose weights the jobs of ``task`` load: None for the entry's own, else the first of
    :data:`VARIANT_TASKS` whose variant loads the same weights (detection and OOD detection share one
    download and one rehearsal stand-in)."""
    weights = task_entry(entry, task)["weights"]
    if task is None or weights == entry["weights"]:
        return None
    return next(t for t in VARIANT_TASKS if task_entry(entry, t)["weights"] == weights)


def check_run(
    config: dict[str, Any], configfiles: list[str], config_args: Iterable[str] | None, workflow_dir: str | Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every check of a run's config and registries, when the Snakefile is parsed; returns the registries.

    ``config`` is Snakemake's (its files merged, then ``--config``): the ``--config`` values are typed here
    as in a file (bobench.config_sources.typed_overrides), the schema fills the defaults, and a fault is one
    ConfigError that starts with the file (or ``--config``) that set the bad key."""
    from bobench.config_sources import ConfigSources, merge

    schemas = Path(workflow_dir) / "config" / "schemas"
    sources = ConfigSources.read(configfiles, config_args)
    merge(config, sources.overrides)
    try:
        validate_against_schema(config, schemas / "config.schema.yaml", "config")
        backbones = load_registry(
            resolve_path(config["registries"]["backbones"], workflow_dir), schemas / "backbones.schema.yaml",
            "backbone registry",
        )
        datasets = load_registry(
            resolve_path(config["registries"]["datasets"], workflow_dir), schemas / "datasets.schema.yaml",
            "dataset registry",
        )
        check_config(config, backbones, datasets)
    except ConfigError as error:
        raise ConfigError(_located(str(error), sources)) from None
    return backbones, datasets


def _located(message: str, sources: Any) -> str:
    """A config message headed by the source of its key: ``my.yaml: key 'knn.k': …``."""
    match = re.match(r"config key '([^']*)': (.*)", message, flags=re.DOTALL)
    if match:
        return f"{sources.origin(match[1])}: key '{match[1]}': {match[2]}"
    if message.startswith("config: "):
        return f"{sources.describe()}: {message.removeprefix('config: ')}"
    return message
