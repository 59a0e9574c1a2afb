"""One registry type for the three kinds of dataset loader (classification, detection, retrieval)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


class LoaderRegistry(dict):
    """Loader functions by name (a registry entry's ``source.loader``) and the ``source`` keys each requires."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.source_keys: dict[str, tuple[str, ...]] = {}
        self.pool_sizes: dict[str, dict[str, int]] = {}

    def register(
        self, name: str, *, source_keys: tuple[str, ...] = (), pool_sizes: Mapping[str, int] | None = None
    ) -> Callable[[Callable], Callable]:
        """Decorator: register a loader under ``name``; ``source_keys`` are the ``source`` args it requires;
        ``pool_sizes``, the sizes of its official splits where they are fixed (a published dataset, not a
        folder of the user's), so that split sizes are checked against them before any job."""

        def decorator(func: Callable) -> Callable:
            if name in self:
                raise ValueError(f"{self.kind} loader {name!r} is already registered")
            self[name] = func
            self.source_keys[name] = tuple(source_keys)
            if pool_sizes:
                self.pool_sizes[name] = dict(pool_sizes)
            return func

        return decorator

    def missing_keys(self, name: str, source: Mapping[str, Any]) -> list[str]:
        return [key for key in self.source_keys[name] if key not in source]
