"""The paper run, rehearsed: stand-in data and weights with the real layouts, so that the real
preparation, fetch-verify-convert-load and task code of every paper job runs offline on CPU.

- :mod:`bobench.rehearsal.manifest`: the record a stand-in maker leaves next to what it wrote, and
  how a registry entry is pointed at it (only pins and expected counts change; every loader is the
  real one).
"""
