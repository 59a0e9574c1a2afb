"""The whole pipe, end to end, on config/test.yaml: outputs and reruns (kills: tests/test_crashes.py).

These tests run real Snakemake in temporary working directories (a few minutes in all).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from bobench.config import cells, ood_plan
from bobench.names import FIGURE_NAMES

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


WORKFLOW_FILES = ["Snakefile", "rules", "workflow_scripts", "bobench", "config", "profiles", "report", "environment.yml"]


def make_workdir(path: Path) -> Path:
    """A working directory with a private copy of the workflow (so tests may edit its code)
    and config/test.yaml pointing at its own copy of the backbone registry.

    Jobs import the copy's ``bobench`` (Snakemake puts the workflow folder on
    their path), and its modules are what Snakemake watches as rule inputs. The
    copy is committed to a throwaway git repository so provenance has a commit."""
    path.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source, target = ROOT / name, path / "workflow" / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    git = ["git", "-C", str(path / "workflow"), "-c", "user.name=test", "-c", "user.email=test@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "workflow under test"], check=True)
    shutil.copy(ROOT / "config" / "backbones.yaml", path / "backbones.yaml")
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config["registries"] = {"backbones": str(path / "backbones.yaml"), "datasets": str(ROOT / "config" / "datasets.yaml")}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    return path


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "snakemake", "-s", str(workdir / "workflow" / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(workdir / "config.yaml"), "--cores", "2", *args,
    ]


def snakemake(workdir: Path, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(snakemake_command(workdir, *args), capture_output=True, text=True, timeout=timeout)


def planned_jobs(workdir: Path) -> list[tuple[str, str | None]]:
    """(rule, backbone wildcard) of every job a dry run would execute."""
    run = snakemake(workdir, "-n")
    assert run.returncode == 0, run.stdout + run.stderr
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", run.stdout):
        match = re.match(r"(?:local)?rule (\w+):", block.strip())
        if match:
            backbone = re.search(r"backbone=(\w+)", block)
            jobs.append((match.group(1), backbone.group(1) if backbone else None))
    return jobs


def output_dir(workdir: Path, key: str) -> Path:
    return workdir / yaml.safe_load((workdir / "config.yaml").read_text())[key]


def metric_table(workdir: Path) -> pd.DataFrame:
    results = pd.read_csv(output_dir(workdir, "results_dir") / "results.csv")
    keys = ["backbone", "task", "dataset", "protocol", "metric"]
    return results[keys + ["value", "ci_low", "ci_high"]].sort_values(keys).reset_index(drop=True)


@pytest.fixture(scope="module")
def battle(tmp_path_factory) -> Path:
    workdir = make_workdir(tmp_path_factory.mktemp("battle"))
    started = time.perf_counter()
    run = snakemake(workdir)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
    print(f"config/test.yaml battle: {time.perf_counter() - started:.0f} s")
    return workdir


def test_battle_leaves_results_ranking_and_figures(battle):
    results_dir, figures_dir = output_dir(battle, "results_dir"), output_dir(battle, "figures_dir")
    results = pd.read_parquet(results_dir / "results.parquet")
    config = yaml.safe_load((battle / "config.yaml").read_text())
    # task_datasets narrows some tasks to one dataset; ood: one row group per OOD set of each classifier.
    ood_sets = [s.set_id for s in ood_plan(config)["fashion_mnist"]]
    registry = yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())
    planned = [cell for cell in cells(config, registry) if cell[0] not in ("ood", "detection", "ood_detection")]
    # linear probe ×2, kNN, retrieval ×2 (digits, synthetic copies), finetune per backbone; the frozen probe on
    # the backbones task_backbones names
    assert len(planned) == len(config["backbones"]) * 6 + len(config["task_backbones"]["frozen_probe"])
    # One detector per detection task: box AP and mask AP rows (detection), AP on the textured set (OOD).
    n_cells = len(planned) + len(config["backbones"]) * len(ood_sets) + 3
    assert results.groupby(["backbone", "task", "dataset", "protocol"]).ngroups == n_cells
    assert results["primary"].sum() == n_cells
    assert set(results.loc[results.task == "retrieval", "metric"]) == {
        "map", "mrr", "precision@1", "precision@5", "precision@10", "recall@1", "recall@5", "recall@10"
    }
    # The retrieval benchmark: its versioned split, its own features, the raw top-k per query.
    copies = results[(results.dataset == "synthetic_copies") & results.primary].set_index("backbone")
    assert set(copies.index) == set(config["backbones"]) and (copies["n_test"] == 40).all()
    assert copies["test_split"].str.startswith("retrieval split v1 (").all()
    assert copies.loc["effnet_lite0_in1k", "value"] > copies.loc["random_effnet_lite0", "value"]
    with np.load(results_dir / "predictions" / "retrieval" / "effnet_lite0_in1k" / "synthetic_copies.npz") as raw:
        assert raw["top"].shape == (40, 100) and raw["per_query_map"].mean() == pytest.approx(copies.loc["effnet_lite0_in1k", "value"])
    assert results.loc[results.metric != "nll", "value"].dropna().between(0, 1).all()
    assert (results.loc[results.metric == "nll", "value"] > 0).all()
    for protocol in ("finetune", "frozen_probe"):
        trained = results[(results.protocol == protocol) & (results.task == "classification")]
        assert set(trained["metric"]) == {"top1", "nll", "ece"} and set(trained["dataset"]) == {"fashion_mnist"}
        # The selected classifiers are kept; the resume checkpoints are gone once their job succeeded.
        n_trained = len(config["task_backbones"].get(protocol, config["backbones"]))
        assert len(list((results_dir / "models" / protocol).rglob("*.pt"))) == n_trained
    assert not list((results_dir / "checkpoints").rglob("*.pt"))
    ood = results[results.task == "ood_classification"]
    assert sorted(set(ood["dataset"])) == sorted(ood_sets) and set(ood["metric"]) == {"top1", "nll", "ece"}
    assert set(ood["protocol"]) == {"finetune"} and "Fashion-MNIST, Gaussian noise 5" in set(ood["dataset_name"])
    # Means of per-sample scores lie inside their percentile intervals (COCO AP, a ranking statistic, need not).
    with_ci = results[results["ci_low"].notna() & results.task.isin(["classification", "retrieval", "ood_classification"])]
    assert (with_ci["ci_low"] <= with_ci["value"]).all() and (with_ci["value"] <= with_ci["ci_high"]).all()
    detection = results[results.task.isin(["detection", "instance_segmentation", "ood_detection"])]
    assert set(zip(detection.task, detection.dataset)) == {
        ("detection", "synthetic_objects"), ("instance_segmentation", "synthetic_objects"),
        ("ood_detection", "synthetic_objects_textured"),
    }
    assert set(detection.backbone) == {"random_effnet_lite0"} and set(detection.protocol) == {"finetune"}
    assert set(detection.loc[detection.primary, "metric"]) == {"ap", "ap50"}
    predictions = sorted((results_dir / "predictions").rglob("*.json"))
    assert [p.relative_to(results_dir / "predictions").parts[0] for p in predictions] == ["detection", "ood_detection"]
    assert all(r["bbox"] and r["score"] > 0 for r in json.loads(predictions[0].read_text())["synthetic_objects"])
    for column in ("config_hash", "git_commit", "packages", "protocol_params", "n_params", "wall_time_s"):
        assert results[column].notna().all(), column
    head = subprocess.run(["git", "-C", str(battle / "workflow"), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert (results["git_commit"] == head.stdout.strip()).all()  # provenance names the code that ran
    is_detection = results.task.isin(["detection", "instance_segmentation", "ood_detection"])
    assert (results.loc[~is_detection, "input_size"] == config["extraction"]["image_size"]).all()
    # Detectors' test images: shorter side 800 (AutoAugment), or longest side 1024 (LSJ: OOD detection), scaled.
    test_side = {"detection": 800, "instance_segmentation": 800, "ood_detection": 1024}
    expected_side = results.loc[is_detection, "task"].map(test_side) * config["detection"]["augment_scale"]
    assert (results.loc[is_detection, "input_size"] == expected_side.round()).all()
    assert pd.read_csv(results_dir / "results.csv").shape == results.shape
    overall = pd.read_csv(results_dir / "ranking" / "ranking_overall.csv")
    assert set(overall["backbone"]) == set(config["backbones"])
    assert "EfficientNet-Lite0 (3.4M)" in (results_dir / "tables" / "table1.md").read_text()
    for name in FIGURE_NAMES:
        for ext in ("png", "pdf"):
            assert (figures_dir / f"{name}.{ext}").stat().st_size > 1000
    # Every GPU-capable step logged its device choice; every heavy step wrote a benchmark file.
    logs = results_dir / "logs"  # each run's logs under its own results folder
    assert "running on the CPU" in next((logs / "extract_features").rglob("*.log")).read_text()
    assert len(list((logs / "benchmarks" / "extract_features").rglob("*.tsv"))) == 6


def headless_chromium():
    """Debian's chromium through selenium (setup.sh installs both); skipped only where neither is installed
    and the run does not demand it (CI sets BOBENCH_REQUIRE_BROWSER=1)."""
    driver_path, browser = shutil.which("chromedriver"), shutil.which("chromium") or shutil.which("chromium-browser")
    if not (driver_path and browser):
        if os.environ.get("BOBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium and chromedriver are required (apt-get install chromium chromium-driver)")
        pytest.skip("no chromium/chromedriver on this machine (setup.sh installs them with apt)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1600,1000"):
        options.add_argument(argument)
    options.binary_location = browser
    return webdriver.Chrome(service=Service(driver_path), options=options)


def test_report_opens_in_a_browser_with_every_figure_and_table(battle, tmp_path):
    """`snakemake --report` makes one self-contained page; in a real browser every figure of the run is listed,
    clicking it shows the PNG decoded, and the leaderboard and results tables open with their rows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    report = tmp_path / "report.html"
    run = snakemake(battle, "--report", str(report))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    driver = headless_chromium()
    wait = WebDriverWait(driver, 20)
    try:
        driver.get(report.as_uri())

        def open_category(name: str) -> list[str]:
            driver.find_element(By.XPATH, "//a[normalize-space()='Results'] | //nav//*[normalize-space()='Results']")
            wait.until(lambda d: d.find_elements(By.XPATH, f"//nav//a[normalize-space()='{name}']"))[0].click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "nav table tbody tr"))
            return [row.find_element(By.TAG_NAME, "td").text for row in driver.find_elements(By.CSS_SELECTOR, "nav table tbody tr")]

        def show(label: str) -> None:
            row = driver.find_element(By.XPATH, f"//nav//table//tr[td[1][normalize-space()='{label}']]")
            row.find_element(By.CSS_SELECTOR, "a[iconname='eye']").click()

        figures = open_category("Figures")
        assert sorted(figures) == sorted([*FIGURE_NAMES, "published_retrieval_mrr"])
        sizes = {}
        for label in figures:
            show(label)
            # The content pane shows the figure: a PNG data URI the browser decoded to a real image.
            image = wait.until(lambda d: next((img for img in d.find_elements(By.CSS_SELECTOR, "div.p-3 > img")
                                               if d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
                                               and img.get_attribute("src").startswith("data:image/png")
                                               and label in d.execute_script("return app.state.resultPath || ''")),  # noqa: B023 (called at once)
                                              None))
            sizes[label] = driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", image)
        assert all(width > 300 and height > 150 for width, height in sizes.values()), sizes

        driver.find_element(By.XPATH, "//nav//ol//a[normalize-space()='Results']").click()
        tables = open_category("Tables")
        assert {"leaderboard", "results table (primary metrics)", "Table 1: backbones"} <= set(tables)
        expected_rows = {"leaderboard": len(yaml.safe_load((battle / "config.yaml").read_text())["backbones"]),
                         "results table (primary metrics)": int(pd.read_parquet(output_dir(battle, "results_dir") / "results.parquet")["primary"].sum())}
        for label, n_rows in expected_rows.items():
            show(label)
            frame = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "iframe"))[0]
            driver.switch_to.frame(frame)
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "tbody tr"))
            assert len(driver.find_elements(By.CSS_SELECTOR, "tbody tr")) == n_rows, label
            driver.switch_to.default_content()
    finally:
        driver.quit()


def test_figures_redraw_from_a_results_table_alone(battle, tmp_path):
    """Redraw mode: a results table (and its replicates) copied to a fresh directory gives the same ranking,
    intervals and every figure, with no task job in the run."""
    shared = tmp_path / "shared"
    shared.mkdir()
    for name in ("results.parquet", "replicates.parquet"):
        shutil.copy(output_dir(battle, "results_dir") / name, shared / name)
    workdir = make_workdir(tmp_path / "redraw")
    run = snakemake(workdir, "figures", "report_tables", "--config", f"results_table={shared / 'results.parquet'}")
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
    ran = re.findall(r"^(?:local)?rule (\w+):", run.stdout + run.stderr, flags=re.MULTILINE)
    assert sorted(ran) == ["backbone_tables", "collect", "figures", "rank", "report_tables"]
    for name in ("ranking_overall.csv", "ranking_intervals.csv", "ranking_iqm.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(output_dir(workdir, "results_dir") / "ranking" / name),
                                      pd.read_csv(output_dir(battle, "results_dir") / "ranking" / name), atol=1e-9)
    for name in FIGURE_NAMES:
        assert (output_dir(workdir, "figures_dir") / f"{name}.png").stat().st_size > 1000


def test_second_run_has_nothing_to_do(battle):
    assert planned_jobs(battle) == []


def test_display_change_reruns_only_the_aggregates(battle):
    registry_path = battle / "backbones.yaml"
    original = registry_path.read_text()
    registry = yaml.safe_load(original)
    registry["random_vit_s16"]["name"] = "ViT-S/16 (untrained)"
    registry_path.write_text(yaml.safe_dump(registry))
    try:
        assert sorted(rule for rule, _ in planned_jobs(battle)) == ["all", "backbone_tables", "collect", "figures", "rank", "report_tables"]
    finally:
        registry_path.write_text(original)


def test_changed_backbone_reruns_only_its_jobs(battle):
    registry_path = battle / "backbones.yaml"
    original = registry_path.read_text()
    registry = yaml.safe_load(original)
    registry["random_vit_s16"]["weights"]["seed"] = 1
    registry_path.write_text(yaml.safe_dump(registry))
    try:
        jobs = planned_jobs(battle)
    finally:
        registry_path.write_text(original)
    per_backbone = sorted(job for job in jobs if job[1] is not None)
    assert {backbone for _, backbone in per_backbone} == {"random_vit_s16"}
    assert sorted(rule for rule, _ in per_backbone) == sorted(  # no frozen probe: not in its task_backbones
        ["extract_features", "linear_probe"] * 2 + ["knn", "retrieval", "finetune", "ood_classification"]
        + ["extract_retrieval_features", "retrieval"]
    )
    assert sorted(rule for rule, backbone in jobs if backbone is None) == [
        "all", "backbone_tables", "collect", "figures", "rank", "report_tables"
    ]


def test_added_backbone_runs_only_its_jobs_and_the_aggregates(battle):
    registry_path, config_path = battle / "backbones.yaml", battle / "config.yaml"
    originals = registry_path.read_text(), config_path.read_text()
    registry, config = yaml.safe_load(originals[0]), yaml.safe_load(originals[1])
    registry["my_resnet18"] = {
        "name": "ResNet-18 (random init)", "family": "CNN", "method": "none", "pretrain_data": "none",
        "pretrain_size": 0, "architecture": {"library": "timm", "name": "resnet18"}, "weights": {"source": "random"},
    }
    config["backbones"].append("my_resnet18")
    registry_path.write_text(yaml.safe_dump(registry))
    config_path.write_text(yaml.safe_dump(config))
    try:
        jobs = planned_jobs(battle)
    finally:
        registry_path.write_text(originals[0])
        config_path.write_text(originals[1])
    assert {backbone for _, backbone in jobs if backbone is not None} == {"my_resnet18"}
    assert sorted(rule for rule, _ in jobs) == sorted(  # tasks narrowed by task_backbones leave it out
        ["extract_features", "linear_probe"] * 2 + ["knn", "retrieval", "finetune", "ood_classification"]
        + ["extract_retrieval_features", "retrieval"] + ["all", "backbone_tables", "collect", "figures", "rank", "report_tables"]
        + ["resolved_config"]  # the config changed: the run's record of it is rewritten
    )


def planned_reasons(workdir: Path, *args: str) -> list[tuple[str, str]]:
    """(rule, reason) of every job a dry run would execute."""
    run = snakemake(workdir, "-n", *args)
    assert run.returncode == 0, run.stdout + run.stderr
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", run.stdout):
        match = re.match(r"(?:local)?rule (\w+):", block.strip())
        if match:
            reason = re.search(r"^\s+reason: (.*)$", block, re.M)
            jobs.append((match.group(1), reason.group(1) if reason else ""))
    return jobs


def _reason_parts(reason: str) -> dict[str, list[str]]:
    """Snakemake's reason line as {label: files}: "Updated input files: a, b; Input files updated by …"."""
    parts = {}
    for part in reason.split("; "):
        label, _, files = part.partition(": ")
        parts[label] = files.split(", ") if files else []
    return parts


# A sample across the library: a task, a shared helper, detector training, figures, ranking, data preparation,
# and a module only a backbone's registry entry point names.
EDITED_MODULES = ["bobench/tasks/knn.py", "bobench/stats.py", "bobench/detection/train.py", "bobench/figures.py",
                  "bobench/ranking.py", "bobench/datasets/sources.py", "bobench/backbones/stable_diffusion.py"]


@pytest.fixture(scope="module")
def every_battle_job(battle) -> list[tuple[str, str]]:
    return planned_reasons(battle, "--forceall")


@pytest.mark.parametrize("module", EDITED_MODULES)
def test_edited_module_reruns_exactly_the_rules_that_can_import_it(battle, every_battle_job, module):
    """A comment edit in a library module reruns the jobs whose script's import closure holds it (and what
    consumes their outputs), and no other job for any other reason."""
    from bobench.imports import rules_importing

    path = battle / "workflow" / module
    rerun_rules = rules_importing(path, battle / "workflow")
    expected = sorted(rule for rule, _ in every_battle_job if rule in rerun_rules)
    original, stat = path.read_text(), path.stat()
    path.write_text(original + "\n# an edit\n")
    try:
        jobs = planned_reasons(battle)
    finally:
        # Text and modification time restored: Snakemake compares times, and the next case must start clean.
        path.write_text(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    reasons = [(rule, _reason_parts(reason)) for rule, reason in jobs]
    # Every job whose script can import the module reruns...
    planned = sorted(rule for rule, _ in reasons if rule in rerun_rules)
    assert planned == expected
    for rule, parts in reasons:
        assert set(parts) <= {"Updated input files", "Input files updated by another job"}, (rule, parts)
        if "Updated input files" in parts:
            # ...and a job reruns for its own code only when its script can import the edited file,
            assert rule in rerun_rules and parts["Updated input files"] == [str(path)], (rule, parts)
        else:
            # while every other job reruns only because an input it reads is rewritten (Snakemake does
            # not list a job's own changed files once an upstream job already makes it rerun).
            assert "Input files updated by another job" in parts, (rule, parts)
    if module == "bobench/tasks/knn.py":  # the module of one task: its jobs and the aggregates only
        assert sorted(rule for rule, _ in jobs) == sorted(["knn"] * 3 + ["all", "collect", "figures", "rank", "report_tables"])


def _class_folder_archive(path: Path, top: str, classes: list[str], per_class: int, seed: int) -> str:
    """A tar of top/<class>/*.png with images of varying size whose brightness encodes the class."""
    import hashlib
    import io
    import tarfile

    from PIL import Image

    rng = np.random.default_rng(seed)
    with tarfile.open(path, "w") as archive:
        for c, name in enumerate(classes):
            for i in range(per_class):
                size = (20 + 4 * (i % 3), 24 - 2 * (i % 2))
                pixels = rng.integers(0, 60, (*size, 3)) + 80 * c
                buffer = io.BytesIO()
                Image.fromarray(pixels.astype(np.uint8)).save(buffer, "PNG")
                info = tarfile.TarInfo(f"{top}/{name}/{i}.png")
                info.size = len(buffer.getvalue())
                archive.addfile(info, io.BytesIO(buffer.getvalue()))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_image_file_datasets_run_through_probe_finetune_and_registry_ood_sets(tmp_path):
    """The paper-scale path on a tiny scale: class-folder archives kept as image files of varying size,
    a fine-tuned classifier tested on a registry OOD set covering 2 of its 3 classes (logits masked)."""
    workdir = make_workdir(tmp_path / "paper_path")
    raw = output_dir(workdir, "data_dir") / "raw"
    classes = ["circle", "square", "star"]
    entries = {}
    for dataset_id, top, names, tasks, splits in (
        ("shapes", "shapes", classes, ["classification"], {"train": "all", "val": 0.2, "test": 0.2}),
        ("shapes_ood", "shapes-r", ["circle", "star"], ["ood"], {"train": 0, "val": 0, "test": "all"}),
    ):
        (raw / dataset_id).mkdir(parents=True)
        sha256 = _class_folder_archive(raw / dataset_id / f"{top}.tar", top, names, 10, seed=len(names))
        entries[dataset_id] = {
            "name": dataset_id, "domain": "synthetic", "licence": "test", "seed": 0, "tasks": tasks, "splits": splits,
            "source": {"loader": "image_folder", "folders": {"all" if "classification" in tasks else "test": f"{top}.tar.d/{top}"},
                       "how_to_get": "made by the test",
                       "files": [{"name": f"{top}.tar", "url": "file:///nonexistent", "sha256": sha256, "extract": True}]},
        }
    (workdir / "datasets.yaml").write_text(yaml.safe_dump(entries))
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config.update(
        backbones=["random_effnet_lite0"], datasets=["shapes"], tasks=["linear_probe", "finetune", "ood"],
        task_datasets={}, task_backbones={}, ood_detection={}, dataset_splits={},
        extraction={"image_size": 32, "batch_size": 8},
        finetune={**config["finetune"], "image_size": 32, "batch_size": 8, "micro_batch": 8},
        ood={"sets": [{"trained_on": "shapes", "datasets": ["shapes_ood"]}]},
        registries={**config["registries"], "datasets": str(workdir / "datasets.yaml")},
    )
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    # The results table is what this test reads: the figures and the report are the battle's to test.
    run = snakemake(workdir, f"{config['results_dir']}/results.parquet")
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]

    results_dir = output_dir(workdir, "results_dir")
    meta = json.loads((output_dir(workdir, "data_dir") / "prepared" / "shapes" / "meta.json").read_text())
    assert meta["storage"] == "files" and meta["image_size"] is None and meta["test_split"] == "held out of the data"
    results = pd.read_parquet(results_dir / "results.parquet")
    primary = results[results.primary].set_index(["task", "protocol", "dataset"])
    assert sorted(primary.index) == [
        ("classification", "finetune", "shapes"), ("classification", "linear_probe", "shapes"),
        ("ood_classification", "finetune", "shapes_ood"),
    ]
    ood = primary.loc[("ood_classification", "finetune", "shapes_ood")]
    assert json.loads(ood["protocol_params"])["classes"] == 2 and ood["n_test"] == 20
    assert ood["test_split"] == "official test" and ood["dataset_name"] == "shapes_ood"
    assert primary.loc[("classification", "linear_probe", "shapes"), "value"] > 0.9  # brightness separates the classes
