"""Per-background cache of the CIELAB lightness plane (an exact-output speed-up of the render).

Luminance matching needs the background's L under the face's box in every sample.
Converting a whole background once and slicing it gives the same bytes
(:func:`ferdata.render.compose.lab_lightness` is per pixel), but costs the whole
image: worth it only for a background that many samples reuse. So the plane is made
once the samples that used the background have asked for as many pixels as it has
(rent-or-buy: at most twice the work of the better choice, whatever the reuse), and
kept in a bounded LRU cache.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import numpy as np

from .compose import lab_lightness

__all__ = ["LightnessCache"]


class LightnessCache:
    """``get(bg_id, image, size)`` -> the image's L plane, or None while converting crops is cheaper.

    Parameters
    ----------
    max_bytes : int
        Planes kept (float32, LRU); the use counters are small and kept for every background.
    buy_after : float
        Make the plane once ``buy_after`` × the image's pixels have been asked for
        (1.0: rent-or-buy; 0: at the first use).
    """

    def __init__(self, max_bytes: int = 256 << 20, buy_after: float = 1.0):
        self.max_bytes = int(max_bytes)
        self.buy_after = float(buy_after)
        self._planes: OrderedDict = OrderedDict()
        self._bytes = 0
        self._asked: dict = {}

    def get(self, bg_id: int, image: np.ndarray, size: int) -> Optional[np.ndarray]:
        plane = self._planes.get(bg_id)
        if plane is not None:
            self._planes.move_to_end(bg_id)
            return plane
        h, w = image.shape[:2]
        if min(h, w) < size:  # every crop is rescaled: the plane would never be used
            return None
        asked = self._asked.get(bg_id, 0) + size * size
        if asked < self.buy_after * h * w:
            self._asked[bg_id] = asked
            return None
        self._asked.pop(bg_id, None)
        plane = lab_lightness(image)
        if plane.nbytes > self.max_bytes:
            return plane
        self._planes[bg_id] = plane
        self._bytes += plane.nbytes
        while self._bytes > self.max_bytes:
            _, old = self._planes.popitem(last=False)
            self._bytes -= old.nbytes
        return plane

    def __len__(self):
        return len(self._planes)
