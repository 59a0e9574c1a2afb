"""bobench: the library behind the Battle-of-the-Backbones Snakemake workflow.

The package is deliberately light to import (no torch at top level) so that
GPU assignment (:mod:`bobench.gpu`) can run before torch is loaded.
"""

__version__ = "0.1.0"
