"""Frozen-feature evaluation tasks: linear probe and kNN classification (retrieval: bobench.retrieval)."""
