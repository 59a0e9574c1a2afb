"""Image retrieval: BoB's protocol (docs/protocol.md §7) at paper scale.

* :mod:`~bobench.retrieval.search`: exact nearest-neighbour ranking by dot
  product of L2-normalised descriptors, a block of queries at a time, so the
  full query × database similarity matrix never exists;
* :mod:`~bobench.retrieval.metrics`: ground truth (positives and junk per
  query) and the metrics: revisited-Oxford mAP, MRR, P@k, R@k;
* :mod:`~bobench.retrieval.splits`: the versioned query/database split files
  the workflow writes (the original ones were never published);
* :mod:`~bobench.retrieval.sources`: the eight datasets' loaders;
* :mod:`~bobench.retrieval.transform`: BoB's retrieval preprocessing;
* :mod:`~bobench.retrieval.reference`: the published MRR table beside ours.
"""
