"""What a job does with a derived file that fails its checksum: unseal it, and say how it is made again.

Every folder the workflow derives (a prepared dataset, an input cache, a retrieval split, a stand-in's raw
files) and every feature pair has a *seal*: the small file written last, which marks it complete and is the
Snakemake output its consumers' rules name (``meta.json``, ``cache.json``, ``split.json``, ``STANDIN.json``,
the features' ``.json``). A job that finds a file failing its checksum (or unreadable) removes that seal
before it stops. Then nothing reads the folder until it is made again (every reader refuses a folder without
its seal), and the next run of the same command makes it again: Snakemake sees the seal, an output of the
rule that makes the folder, missing, reruns that rule and, as its outputs are new, every job downstream.
The seal holds nothing that the rebuild does not write again. (No imports from the project: any module may
use this.)
"""

from __future__ import annotations

import os
from pathlib import Path

#: The README's recovery, in every message (after a kill -9 Snakemake also wants ``--unlock`` first).
RERUN = "rerun the same snakemake command (the one that started this run)"


def unseal(seal: str | os.PathLike, rule: str, problem: str) -> str:
    """Remove ``seal`` and return the message for the error: ``problem``, what was done, how to recover."""
    seal = Path(seal)
    seal.unlink(missing_ok=True)
    return (
        f"{problem}. Removed its seal {seal}, so that no job reads it until it is made again. To rebuild "
        f"it, {RERUN}: Snakemake sees {seal.name} missing and reruns rule {rule}, then the jobs that read "
        f"its output"
    )
