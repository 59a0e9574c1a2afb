"""The typed job API: one function per job kind, called by the thin ``workflow_scripts``.

Each module takes typed inputs (ids, paths, cached features) and options (built from the rule's config
section by :func:`bobench.options.options_from_config`) and returns a typed result (a
:class:`bobench.cells.CellRecord`, a :class:`bobench.features.FeatureSet`, …) with a ``write`` method for the
rule's outputs. This package imports none of its modules: a script's import closure (its rule's library
inputs, :mod:`bobench.imports`) holds only the job module it calls.
"""
