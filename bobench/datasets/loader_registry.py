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

    def register(self, name: str, *, source_keys: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
        """Decorator: register a loader under ``name``; ``source_keys`` are the ``source`` args it requires."""

        def decorator(func: Callable) -> Callable:
            if name in self:
                raise ValueError(f"{self.kind} loader {name!r} is already registered")
            self[name] = func
            self.source_keys[name] = tuple(source_keys)
            return func

        return decorator

    def missing_keys(self, name: str, source: Mapping[str, Any]) -> list[str]:
        return [key for key in self.source_keys[name] if key not in source]
