"""The registry: scheme name -> class, and building a scheme from a config.

Example:
    >>> from posenc_jax.schemes import make_scheme
    >>> make_scheme({"name": "rope", "base": 500000.0}).base
    500000.0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from posenc_jax.schemes.base import Scheme

__all__ = [
    "SCHEMES",
    "context_extension_names",
    "list_schemes",
    "make_scheme",
    "register_scheme",
]

SCHEMES: dict[str, type[Scheme]] = {}
"""Every registered scheme class by name."""


def register_scheme(cls: type[Scheme]) -> type[Scheme]:
    """Adds a Scheme subclass to the registry under ``cls.name`` (a class decorator)."""
    if cls.name in SCHEMES and SCHEMES[cls.name] is not cls:
        raise ValueError(f"a scheme named {cls.name!r} is already registered")
    SCHEMES[cls.name] = cls
    return cls


def list_schemes() -> list[str]:
    """Names accepted by `make_scheme`."""
    return sorted(SCHEMES)


def context_extension_names() -> list[str]:
    """Every context-extension method some registered scheme offers."""
    return sorted({m for cls in SCHEMES.values() for m in cls.context_extensions})


def make_scheme(spec: str | Mapping[str, Any] | Scheme) -> Scheme:
    """Builds a scheme from a name, a config dict ``{"name": ..., **settings}`` or a Scheme.

    Unknown names and unknown settings raise a ValueError listing the valid ones.

    Example:
        >>> make_scheme("alibi").name
        'alibi'
    """
    if isinstance(spec, Scheme):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ValueError(
            f"a scheme is a name or a mapping with a 'name' key; got {spec!r}; "
            f"valid names: {list_schemes()}"
        )
    name = spec["name"]
    if name not in SCHEMES:
        raise ValueError(f"unknown scheme {name!r}; valid schemes: {list_schemes()}")
    cls = SCHEMES[name]
    keys = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in spec if k != "name" and k not in keys]
    if unknown:
        raise ValueError(
            f"unknown setting {unknown[0]!r} for scheme {name!r}; valid settings: {sorted(keys)}"
        )
    return cls(**{k: v for k, v in spec.items() if k != "name"})
