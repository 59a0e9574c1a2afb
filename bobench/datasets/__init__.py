"""Datasets: a registry (``config/datasets.yaml``), loaders, and one prepared format.

``prepare_dataset`` turns a registry entry into a folder of memory-mappable
``.npy`` splits plus ``meta.json`` (see :mod:`bobench.datasets.prepared`);
everything downstream reads datasets only through :func:`load_prepared`.
The three kinds of dataset (classification, detection, retrieval), with the
check of any registry entry, are the table :mod:`bobench.datasets.kinds`
(not imported here: it imports bobench.detection.sources and
bobench.retrieval.sources, whose own imports run this package first).
"""

from bobench.datasets import paper_sources  # noqa: E402,F401  (registers BoB's dataset loaders)
from bobench.datasets.downloads import (
    ChecksumError,
    DataUnavailableError,
    NumpyOnlyUnpickler,
    load_numpy_pickle,
)
from bobench.datasets.prepared import (
    SPLITS,
    PreparedDataError,
    PreparedDataset,
    load_prepared,
    make_splits,
    prepared_filenames,
    stratified_sample,
    write_prepared,
)
from bobench.datasets.sources import (
    LOADERS,
    VALID_TASKS,
    RawDataset,
    prepare_dataset,
    raw_folders_shared_with,
    register_loader,
)

__all__ = [
    "LOADERS",
    "SPLITS",
    "VALID_TASKS",
    "ChecksumError",
    "DataUnavailableError",
    "NumpyOnlyUnpickler",
    "PreparedDataError",
    "PreparedDataset",
    "RawDataset",
    "load_numpy_pickle",
    "load_prepared",
    "make_splits",
    "prepare_dataset",
    "prepared_filenames",
    "raw_folders_shared_with",
    "register_loader",
    "stratified_sample",
    "write_prepared",
]
