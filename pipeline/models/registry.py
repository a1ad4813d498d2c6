"""Model registry: a new model is one file plus `@register_model`.

`create_model(name, spec, **overrides)` builds it from its config dataclass; `None`
overrides are dropped so unset CLI flags never replace a model's defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from pipeline.errors import RamerError
from pipeline.models.base import MERModel, ModelSpec

_MODELS: dict[str, type[MERModel]] = {}


def register_model(name: str) -> Callable[[type[MERModel]], type[MERModel]]:
    """Class decorator. The class needs a `Config` dataclass and `__init__(spec, cfg)`."""

    def deco(cls: type[MERModel]) -> type[MERModel]:
        if name in _MODELS:
            raise ValueError(f"model '{name}' registered twice")
        if not dataclasses.is_dataclass(getattr(cls, "Config", None)):
            raise TypeError(f"{cls.__name__} needs a nested @dataclass Config")
        cls.registry_name = name
        _MODELS[name] = cls
        return cls

    return deco


def _load_builtin() -> None:
    # Importing the modules runs their @register_model decorators.
    from pipeline.models import zoo  # noqa: F401


def list_models() -> list[str]:
    _load_builtin()
    return sorted(_MODELS)


def model_class(name: str) -> type[MERModel]:
    _load_builtin()
    if name not in _MODELS:
        raise RamerError(f"unknown model '{name}'; available: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def model_config(name: str, **overrides: Any) -> Any:
    cls = model_class(name)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - fields)
    if unknown:
        raise RamerError(f"model '{name}' has no option(s) {unknown}; options: {sorted(fields)}")
    return cls.Config(**given)


def create_model(name: str, spec: ModelSpec, **overrides: Any) -> MERModel:
    """Build a registered model with its defaults, updated by non-None overrides."""
    return model_class(name)(spec, model_config(name, **overrides))
