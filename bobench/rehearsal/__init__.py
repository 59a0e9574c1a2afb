"""The paper run, rehearsed: stand-in data and weights with the real layouts, so that the real
preparation, fetch-verify-convert-load and task code of every paper job runs offline on a CPU.

- :mod:`~bobench.rehearsal.caps`: the overlay's caps (images per split, batches, steps, loader processes).
- :mod:`~bobench.rehearsal.coverage`: the covering selection of a DAG's jobs.
- :mod:`~bobench.rehearsal.manifest`: what a stand-in maker records, and the only registry values
  (checksums, expected counts) it may replace; every loader stays the real one.
- :mod:`~bobench.rehearsal.standins`: which stand-ins a rehearsal needs, and the one entry point per kind.
- :mod:`~bobench.rehearsal.standin_classification`, ``…_detection``, ``…_retrieval``: the dataset makers,
  each writing a paper dataset's real published layout; :mod:`~bobench.rehearsal.images` their pixels
  and archives.
- :mod:`~bobench.rehearsal.standin_weights`: seeded checkpoints in each weight source's native layout.
- :mod:`~bobench.rehearsal.report`, :mod:`~bobench.rehearsal.check`: what a rehearsal ran and covered.
"""
