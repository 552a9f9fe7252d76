"""Contact sheets and plots (numpy/cv2; matplotlib only for figures)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from .labels import CLASSES


def contact_sheet(images: np.ndarray, landmarks: Optional[np.ndarray] = None,
                  masks: Optional[np.ndarray] = None, captions: Optional[Sequence[str]] = None,
                  ncols: Optional[int] = None, tile: Optional[int] = None, pad: int = 2) -> np.ndarray:
    """Tile ``images`` (n,H,W,3) uint8 into one RGB sheet.

    Landmarks (n,68,2) are drawn as green dots, mask outlines (n,H,W) in red,
    captions under each tile. ``tile`` rescales each image to that side first.
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
    cap_h = 14 if captions is not None else 0
    ncols = ncols or int(math.ceil(math.sqrt(n)))
    nrows = int(math.ceil(n / ncols))
    sheet = np.full((nrows * (th + cap_h + pad) + pad, ncols * (tw + pad) + pad, 3), 255, np.uint8)
    for i in range(n):
        im = np.ascontiguousarray(images[i])
        if scale != 1.0:
            im = cv2.resize(im, (tw, th), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        im = im.copy()
        if masks is not None:
            m = (np.asarray(masks[i]) > 0).astype(np.uint8)
            if scale != 1.0:
                m = cv2.resize(m, (tw, th), interpolation=cv2.INTER_NEAREST)
            contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(im, contours, -1, (255, 40, 40), 1)
        if landmarks is not None:
            for x, y in np.asarray(landmarks[i], np.float64) * scale:
                if np.isfinite(x) and np.isfinite(y):
                    cv2.circle(im, (int(round(x)), int(round(y))), 1, (40, 255, 40), -1)
        r, c = divmod(i, ncols)
        y0, x0 = pad + r * (th + cap_h + pad), pad + c * (tw + pad)
        sheet[y0:y0 + th, x0:x0 + tw] = im
        if captions is not None:
            cv2.putText(sheet, str(captions[i])[: max(4, tw // 7)], (x0 + 1, y0 + th + 11),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


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
