"""Dataclass configs and their TOML/JSON round trip."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional

from .errors import FerdataError


@dataclass
class IngestConfig:
    """How faces are found, aligned and masked (``ferdata ingest``)."""

    size: Optional[int] = None          # crop side; None: 256, or the native size of pre-cropped datasets
    forehead: float = 0.0               # raise brows by this many eye-brow distances for the mask
    upsample: int = 0                   # dlib HOG upsampling
    retry_upsample: Optional[int] = 1   # retry with this upsampling when no face is found
    detect_aligned: bool = False        # also detect landmarks on pre-cropped faces (FER2013/FER+)
    eye_weight: float = 10.0             # weight of eye corners in the alignment fit
    on_error: str = "skip"              # skip | raise


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls, data: dict, source: str = "config"):
    """Build dataclass ``cls`` from ``data``; unknown keys are a clear error."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise FerdataError(f"{source}: unknown key(s) {', '.join(unknown)} for {cls.__name__} "
                           f"(known: {', '.join(sorted(names))})")
    return cls(**data)


def config_hash(d: dict) -> str:
    """Stable short hash of a JSON-able dict."""
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def load_toml(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FerdataError(f"{path}: recipe/config file does not exist")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise FerdataError(f"{path}: invalid TOML ({exc})") from exc


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dump_toml(d: dict) -> str:
    """Write a flat (or one-level nested) dict as TOML; None values are omitted."""
    lines, tables = [], []
    for k, v in d.items():
        if v is None:
            continue
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    for name, t in tables:
        lines.append(f"\n[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in t.items() if v is not None]
    return "\n".join(lines) + "\n"
