"""Frozen-feature evaluation tasks: linear probe, kNN classification, retrieval."""
