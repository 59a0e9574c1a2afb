"""Errors shared across the library, in a leaf module (imports nothing) so that any module can raise them."""


class ConfigError(ValueError):
    """The config or a registry is invalid; the message says where and why."""
