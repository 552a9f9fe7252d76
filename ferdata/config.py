"""Dataclass configs and their TOML/JSON round trip."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import FerdataError
from .typed import TypedConfig, check_choice, check_ranges, coerce_fields

MIN_SIZE, MAX_SIZE = 16, 4096   # bounds of every image side (face store, render)
MAX_PER_FACE = 10_000_000       # shard renders per face (FERAtt: 9,231); more is a typo (live renders: unbounded)
MAX_SHARDS = 1_000_000          # shards of one render (8e9 samples at the default shard size)


def default_encoding(size: int) -> str:
    """How shards store images: JPEG at >= 96 px, raw below (``docs/shards.md``)."""
    return "jpeg" if size >= 96 else "raw"


@dataclass
class IngestConfig(TypedConfig):
    """How faces are found, aligned and masked (``ferdata ingest``)."""

    _what = "ingest config"

    size: Optional[int] = None          # crop side; None: 256, or the native size of pre-cropped datasets
    forehead: float = 0.0               # raise brows by this many eye-brow distances for the mask
    upsample: int = 0                   # dlib HOG upsampling
    detector: str = "hog"               # hog | cnn | auto (CNN when HOG finds nothing)
    retry_upsample: Optional[int] = 1   # retry with this upsampling when no face is found
    detect_aligned: bool = False        # also detect landmarks on pre-cropped faces (FER2013/FER+)
    eye_weight: float = 10.0             # weight of eye corners in the alignment fit
    on_error: str = "skip"              # skip | raise

    RANGES = {"size": (MIN_SIZE, MAX_SIZE), "forehead": (0.0, 2.0), "upsample": (0, 4),
              "retry_upsample": (0, 4), "eye_weight": (0.0, None)}

    def validate(self) -> "IngestConfig":
        check_ranges(self, self.RANGES, self._what)
        check_choice(self, "on_error", ("skip", "raise"), self._what)
        return self


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls, data: dict, source: str = "config"):
    """Build dataclass ``cls`` from ``data``: unknown keys and values of the wrong type
    are one error naming ``source`` (a file, ``--set``), the key and the value."""
    return cls(**coerce_fields(cls, data, source))


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


@dataclass
class RenderConfig(TypedConfig):
    """Every parameter of the renderer (docs/rendering.md).

    Defaults reproduce FERAtt's generator (seed 000): 128×128 RGB, 9,231 renders
    per face, scale 0.8–1.2, rotation ±30°, translation ±0.2, flip, luminance ratio
    in CIELAB, photometric jitter — with a soft alpha instead of a hard paste.
    """

    _what = "render config"

    size: int = 128
    per_face: int = 9231
    seed: int = 0
    # geometry
    scale_min: float = 0.8
    scale_max: float = 1.2
    rotation: float = 30.0          # degrees, uniform in ±rotation
    translate: float = 0.2          # fraction of size, uniform in ±translate
    perspective: float = 0.0        # corner jitter as a fraction of size (0 = off)
    flip: float = 0.5               # probability of a horizontal flip
    # luminance / blending
    luminance: str = "ratio"        # ratio | reinhard | none
    lum_min: float = 0.5
    lum_max: float = 1.5
    blend: str = "alpha"            # alpha | poisson | hard
    alpha_mode: str = "gaussian"    # gaussian | distance
    erode: Optional[float] = None   # px; None: size/64
    feather: Optional[float] = None  # px; None: size/32
    # photometric augmentation
    brightness_min: float = 0.75
    brightness_max: float = 1.25
    contrast: float = 0.25          # contrast factor in 1 ± contrast
    gamma: float = 0.25             # gamma in 1 ± gamma
    blur_p: float = 0.5
    blur_sigma: float = 1.5         # max sigma at 128 px (scaled by size/128)
    noise: float = 0.05             # max noise sigma as a fraction of 255
    gray: bool = False
    # backgrounds
    exclude_categories: tuple = (1,)  # COCO category ids/names to exclude (person)
    include_categories: tuple = ()
    # shards
    shard_size: int = 8192
    encoding: Optional[str] = None  # raw | jpeg; None: jpeg at >= 96 px
    jpeg_quality: int = 95

    def resolved(self) -> "RenderConfig":
        """A copy with the automatic values filled in (what is stored)."""
        d = dataclasses.asdict(self)
        if d["erode"] is None:
            d["erode"] = self.size / 64.0
        if d["feather"] is None:
            d["feather"] = self.size / 32.0
        if d["encoding"] is None:
            d["encoding"] = default_encoding(self.size)
        d["exclude_categories"] = tuple(d["exclude_categories"])
        d["include_categories"] = tuple(d["include_categories"])
        return RenderConfig(**d)

    RANGES = {
        "size": (MIN_SIZE, MAX_SIZE), "per_face": (1, None), "seed": (0, None),
        "scale_min": (1e-3, None), "scale_max": (1e-3, None), "rotation": (0.0, 180.0),
        "translate": (0.0, 1.0), "perspective": (0.0, 0.5), "flip": (0.0, 1.0),
        "lum_min": (1e-3, None), "lum_max": (1e-3, None), "erode": (0.0, None), "feather": (0.0, None),
        "brightness_min": (0.0, None), "brightness_max": (0.0, None), "contrast": (0.0, 1.0),
        "gamma": (0.0, 0.99), "blur_p": (0.0, 1.0), "blur_sigma": (0.0, None), "noise": (0.0, 1.0),
        "shard_size": (1, 2**20), "jpeg_quality": (1, 100),
    }
    CHOICES = {"luminance": ("ratio", "reinhard", "none"), "blend": ("alpha", "poisson", "hard"),
               "alpha_mode": ("gaussian", "distance"), "encoding": (None, "raw", "jpeg")}

    def validate(self) -> "RenderConfig":
        check_ranges(self, self.RANGES, self._what)
        for name, choices in self.CHOICES.items():
            check_choice(self, name, choices, self._what)
        for lo, hi in (("scale_min", "scale_max"), ("lum_min", "lum_max"), ("brightness_min", "brightness_max")):
            if getattr(self, lo) > getattr(self, hi):
                raise FerdataError(f"{self._what}: {lo} must be <= {hi}, got {getattr(self, lo)!r} > "
                                   f"{getattr(self, hi)!r}")
        return self
