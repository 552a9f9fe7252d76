"""Contact sheets (numpy/cv2): faces tiled with landmarks, mask outlines and captions."""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from .labels import CLASSES

log = logging.getLogger(__name__)


#: landmarks are drawn only on tiles larger than this (px): on smaller ones 68 dots hide the face
LANDMARK_MAX_HIDDEN_TILE = 128
_FONT, _FONT_SCALE, _LINE_H = cv2.FONT_HERSHEY_SIMPLEX, 0.3, 10


def _caption_lines(caption) -> list:
    """A caption as lines: a string split at newlines, or a sequence of strings."""
    if caption is None:
        return []
    if isinstance(caption, str):
        return caption.split("\n")
    return [str(c) for c in caption]


def _fit(text: str, width: int) -> str:
    """``text`` cut (with a trailing '…'-like '~') to fit ``width`` px in the caption font."""
    if cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)[0][0] <= width:
        return text
    while text and cv2.getTextSize(text + "~", _FONT, _FONT_SCALE, 1)[0][0] > width:
        text = text[:-1]
    return text + "~"


def _draw_tile(im, landmarks, mask, scale: float, tw: int, th: int) -> np.ndarray:
    im = np.ascontiguousarray(im)
    if scale != 1.0:
        im = cv2.resize(im, (tw, th), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    im = im.copy()
    if mask is not None:
        m = (np.asarray(mask) > 0).astype(np.uint8)
        if scale != 1.0:
            m = cv2.resize(m, (tw, th), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(im, contours, -1, (255, 40, 40), 1)
    if landmarks is not None:
        for x, y in np.asarray(landmarks, np.float64) * scale:
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(im, (int(round(x)), int(round(y))), 1, (40, 255, 40), -1)
    return im


def contact_sheet(images: np.ndarray, landmarks: Optional[np.ndarray] = None,
                  masks: Optional[np.ndarray] = None, captions: Optional[Sequence] = None,
                  ncols: Optional[int] = None, tile: Optional[int] = None, pad: int = 2) -> np.ndarray:
    """Tile ``images`` (n,H,W,3) uint8 into one RGB sheet (array in, array out).

    Landmarks (n,68,2) are drawn as green dots on tiles larger than
    :data:`LANDMARK_MAX_HIDDEN_TILE` px only (smaller ones get none, and one INFO line
    says so), mask outlines (n,H,W) in red, captions in small text under each tile (a
    caption: one string, lines split at ``\\n``, or a sequence of lines; see
    :func:`sample_captions`). ``tile`` rescales each image to that side first.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    n, H, W = images.shape[:3]
    if n == 0:
        raise ValueError("no images to draw")
    scale = 1.0 if tile is None else tile / max(H, W)
    th, tw = int(round(H * scale)), int(round(W * scale))
    if landmarks is not None and max(th, tw) <= LANDMARK_MAX_HIDDEN_TILE:
        log.info("contact sheet: landmarks not drawn on %d px tiles (only on tiles > %d px; ask for a larger "
                 "tile)", max(th, tw), LANDMARK_MAX_HIDDEN_TILE)
        landmarks = None
    lines = [_caption_lines(c) for c in captions] if captions is not None else None
    cap_h = max(1, max(map(len, lines))) * _LINE_H + 3 if lines is not None else 0
    ncols = ncols or int(math.ceil(math.sqrt(n)))
    nrows = int(math.ceil(n / ncols))
    sheet = np.full((nrows * (th + cap_h + pad) + pad, ncols * (tw + pad) + pad, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, ncols)
        y0, x0 = pad + r * (th + cap_h + pad), pad + c * (tw + pad)
        sheet[y0:y0 + th, x0:x0 + tw] = _draw_tile(images[i], None if landmarks is None else landmarks[i],
                                                  None if masks is None else masks[i], scale, tw, th)
        for k, text in enumerate(lines[i] if lines is not None else ()):
            cv2.putText(sheet, _fit(text, tw - 1), (x0 + 1, y0 + th + 8 + k * _LINE_H),
                        _FONT, _FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


def sample_captions(labels, indices=None, subjects=None, sources=None, dataset: Optional[str] = None) -> list:
    """One caption per sample, the lines ``"#<index> <class>"``, ``"<subject>"`` and
    ``"<dataset>:<source>"`` (the parts given; a source path is shown by its file name,
    an integer source is a face index: ``"face <i>"``)."""
    names = label_captions(labels)
    out = []
    for i, name in enumerate(names):
        lines = [f"#{int(indices[i])} {name}" if indices is not None else name]
        if subjects is not None and str(subjects[i]):
            lines.append(str(subjects[i]))
        if sources is not None:
            src = sources[i]
            src = f"face {int(src)}" if isinstance(src, (int, np.integer)) else Path(str(src)).name
            lines.append(f"{dataset}:{src}" if dataset else src)
        elif dataset:
            lines.append(str(dataset))
        out.append(lines)
    return out


def sheet_captions(samples: dict) -> list:
    """:func:`sample_captions` of a sample dict (``label`` and, where present, ``index``,
    ``subject``, ``source`` or ``face_index``, ``dataset``) — what ``ferdata show`` draws."""
    src = samples.get("source")
    if src is None and samples.get("face_index") is not None:
        src = [int(v) for v in np.asarray(samples["face_index"]).ravel()]
    return sample_captions(samples["label"], samples.get("index"), samples.get("subject"), src,
                           samples.get("dataset"))


SHEET_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def save_image(path, rgb: np.ndarray) -> None:
    """Write an RGB image; the format follows the extension (one of SHEET_EXTENSIONS).

    Written to a temporary name, fsynced and renamed: no half-written file on failure.
    """
    from .errors import FerdataError
    from .atomic import atomic_write_bytes

    ext = Path(path).suffix.lower()
    if ext not in SHEET_EXTENSIONS:
        raise FerdataError(f"{path}: unknown image extension {ext or '(none)'!r}; use one of "
                           f"{', '.join(SHEET_EXTENSIONS)}")
    ok, buf = cv2.imencode(ext, cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise FerdataError(f"{path}: cannot encode the image as {ext}")
    try:
        atomic_write_bytes(path, buf.tobytes())
    except OSError as exc:
        raise FerdataError(f"{path}: cannot write the image ({exc.strerror or exc})") from None


save_png = save_image  # the former name


def label_captions(labels) -> list[str]:
    return [CLASSES[int(i)] if 0 <= int(i) < len(CLASSES) else str(i) for i in labels]
