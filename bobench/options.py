"""One policy from a config section to an options dataclass.

A rule hands its job a config section as a plain dict (``snakemake.params``), every key filled by the config
schema (``config/schemas/config.schema.yaml``: the one place defaults are written down; a test keeps each
dataclass field's default equal to the schema's). :func:`options_from_config` turns it into the job's
options, strictly:

* every key must be a field of the dataclass: an unknown key is a :class:`~bobench.errors.ConfigError` that
  names ``section.key`` and the valid keys; nothing is dropped silently;
* a list becomes a tuple where the field is a tuple (YAML has no tuples), and the items of a tuple of floats
  become floats (YAML writes ``1`` for ``1.0``; a probe's C values name its results);
* ``fixed`` values are set by the protocol, not by the config: a key of the section that the protocol fixes
  is an error, not overridden.

A section that also holds keys that are not options of the class (``image_size`` of a fine-tuning recipe,
``lrs`` and ``settings`` of a detection recipe) is split first with :func:`take`, by name.

Imports only the standard library and the leaf errors module: the Snakefile may use it at parse time.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from bobench.errors import ConfigError

T = TypeVar("T")
_UnionType = type(int | None)  # what ``X | Y`` annotations evaluate to


def options_from_config(cls: type[T], section: Mapping[str, Any] | None, where: str, **fixed: Any) -> T:
    """The ``cls`` options of config section ``where`` (see the module docstring); fields the section leaves
    out keep the dataclass default (options that are no config key, like a probe's dtype)."""
    section = dict(section or {})
    fields = [field.name for field in dataclasses.fields(cls)]
    for key, value in section.items():
        if key not in fields:
            raise ConfigError(
                f"config key '{where}.{key}': unknown key {key!r} (value {value!r}) for {cls.__name__}; "
                f"valid keys: {', '.join(fields)}"
            )
    for key in fixed:
        if key not in fields:
            raise TypeError(f"{cls.__name__} has no field {key!r} to fix")
        if key in section:
            raise ConfigError(
                f"config key '{where}.{key}': fixed by the protocol to {fixed[key]!r}, so it cannot be configured"
            )
    hints = typing.get_type_hints(cls)
    return cls(**{key: _as_field_type(value, hints[key]) for key, value in {**section, **fixed}.items()})


def take(section: Mapping[str, Any] | None, keys: Iterable[str], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(the named keys, the rest)`` of a config section: a key that is not an option of the class the rest
    goes to is taken out by name. Each named key must be there (the schema fills every key)."""
    rest = dict(section or {})
    taken = {}
    for key in keys:
        if key not in rest:
            raise ConfigError(f"config section {where!r} lacks key {key!r} (the config schema fills every key)")
        taken[key] = rest.pop(key)
    return taken, rest


def _tuple_type(hint: Any) -> Any:
    """The ``tuple[...]`` type among a field's (possibly optional) types, or None."""
    if typing.get_origin(hint) is tuple:
        return hint
    for arg in typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, _UnionType) else ():
        if typing.get_origin(arg) is tuple:
            return arg
    return None


def _as_field_type(value: Any, hint: Any) -> Any:
    tuple_type = _tuple_type(hint)
    if tuple_type is None or not isinstance(value, (list, tuple)):
        return value
    items = typing.get_args(tuple_type)
    if items[:1] == (float,):
        return tuple(float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value)
    return tuple(value)
