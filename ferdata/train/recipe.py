"""A TrainConfig from a recipe (TOML) plus KEY=VALUE overrides — no click, no CLI import."""
from __future__ import annotations

import json
from typing import Iterable, Optional

from ..config import from_dict, load_toml
from ..typed import coerce_fields
from .config import TrainConfig, flatten_keys
from ..errors import FerdataError

__all__ = ["parse_sets", "train_config"]

_TUPLES = ("noise", "noise_train")


def parse_sets(pairs: Iterable[str], option: str = "--set") -> dict:
    """``("epochs=3", "lbp=uniform")`` -> ``{"epochs": 3, "lbp": "uniform"}`` (JSON values when they parse)."""
    out = {}
    for kv in pairs:
        if "=" not in kv:
            raise FerdataError(f"{option} {kv!r}: expected KEY=VALUE")
        k, v = kv.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except ValueError:
            out[k.strip()] = v
    return out


def train_config(recipe: Optional[str] = None, sets: dict | None = None, **overrides) -> TrainConfig:
    """Recipe keys, then ``sets``, then non-None ``overrides``; validated.

    Each source is checked against the declarations on its own, so an error names where
    the bad key or value came from (the recipe file, ``--set``, an option).
    """
    d = _typed(load_toml(recipe), str(recipe)) if recipe else {}
    d.update(_typed(sets or {}, "--set"))
    d.update(_typed({k: v for k, v in overrides.items() if v is not None}, "option"))
    cfg = from_dict(TrainConfig, d, str(recipe) if recipe else "--set")
    return cfg.validate()


def _typed(d: dict, source: str) -> dict:
    d = flatten_keys(dict(d), source)
    for k in _TUPLES:
        if isinstance(d.get(k), (list, float, int)):
            d[k] = tuple(d[k]) if isinstance(d[k], list) else (d[k],)
    return coerce_fields(TrainConfig, d, source)
