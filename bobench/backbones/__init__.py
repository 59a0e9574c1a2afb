"""Backbones: registry entry → model with strictly loaded weights.

``bobench.backbones.model.create_backbone`` is the one entry point. This package
module stays free of torch so that the Snakefile can check registry entries
(converter names) without paying for a torch import.
"""
