"""Materialise the built-in sample (faces.h5 + backgrounds/)."""
from __future__ import annotations

from pathlib import Path

from .backgrounds import make_sample_backgrounds
from ..config import IngestConfig
from ..datasets.sample import read_sample
from ..faces.ingest import ingest


def make_sample(out="sample", size: int = 256, workers: int = 1) -> dict:
    """Write ``out/faces.h5`` (aligned, masked sample faces) and ``out/backgrounds/``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    faces = out / "faces.h5"
    rep = ingest(read_sample(), faces, "sample", IngestConfig(size=size, on_error="raise"), workers=workers,
                 root="built-in sample", overwrite=True)  # the sample is made anew, never edited by hand
    bg = make_sample_backgrounds(out / "backgrounds")
    n_bg = len(list((bg / "sample").glob("*.jpg")))
    return {"faces": str(faces), "n_faces": rep["ingested"], "backgrounds": str(bg), "n_backgrounds": n_bg}
