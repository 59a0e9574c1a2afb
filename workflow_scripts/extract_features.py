"""Rule extract_features: one backbone × one dataset → features of every split."""

from pathlib import Path

from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake); claims the GPU before torch loads

from bobench.backbones.model import create_backbone  # noqa: E402
from bobench.datasets import load_prepared  # noqa: E402
from bobench.features import ExtractionOptions, extract_features  # noqa: E402
from bobench.io import save_npz, write_json  # noqa: E402
from bobench.provenance import canonical_hash  # noqa: E402

sm = snakemake  # noqa: F821
spec, extraction = dict(sm.params.backbone), dict(sm.params.extraction)
dataset = load_prepared(Path(sm.input.dataset[0]).parent, verify=True)
backbone = create_backbone(sm.wildcards.backbone, spec, image_size=extraction["image_size"])
options = ExtractionOptions(
    batch_size=extraction["batch_size"],
    precision=extraction["precision"],
    channels_last=extraction["channels_last"],
    num_workers=extraction["num_workers"],
)  # torch's thread count is the rule's `threads`, set by start_job
splits = {name: dataset.split(name) for name in ("train", "val", "test")}
arrays, info = extract_features(backbone, splits, family=spec["family"], options=options)
info.update(
    dataset=sm.wildcards.dataset,
    num_classes=dataset.num_classes,
    class_names=dataset.class_names,
    test_split=dataset.meta["test_split"],
    # What the features depend on; downstream records cite it as their origin.
    fingerprint=canonical_hash({"backbone": spec, "extraction": {k: v for k, v in extraction.items() if k != "num_workers"}, "dataset": dataset.meta["manifest"]}),
)
# The npz goes first and the json last: the json marks a complete pair.
save_npz(sm.output.features, **arrays)
write_json(sm.output.info, info)
