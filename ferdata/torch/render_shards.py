"""``ferdata render --device``: the same shards, made by the batched torch renderer.

:class:`TorchRenderContext` is the render worker's context of :mod:`ferdata.render.run`
with the per-sample loop replaced by :class:`~ferdata.torch.render.TorchRenderer`
batches; JPEG encoding runs on a CPU thread pool (OpenCV releases the GIL) while the
schema, the manifest, resume and the atomic writes stay those of the shard renderer.
Shards record ``renderer = "torch:<device type>"`` (docs/rendering.md).
"""
from __future__ import annotations

import os

import numpy as np

from ..parallel import thread_pool
from ..render.run import RenderContext
from ..shards.schema import encode_jpeg
from .render import TorchRenderer

BATCH = 1024


class TorchRenderContext(RenderContext):
    """A render context whose shards come from the torch renderer on ``job.device``."""

    def __init__(self, job):
        super().__init__(job)
        self.renderer = TorchRenderer(self, self.bg, job.cfg, device=job.device)

    def render_sample(self, g: int, photometric_on: bool = True, p=None) -> dict:
        s = self._batch(np.array([g]), photometric_on)
        return {k: v[0] for k, v in s.items()}

    def _batch(self, idx: np.ndarray, photometric: bool = True) -> dict:
        r = self.renderer.render(idx, photometric=photometric)
        return {"image": r["image"].permute(0, 2, 3, 1).cpu().numpy(), "mask": r["mask"].cpu().numpy(),
                "landmarks": r["landmarks"].cpu().numpy(), "label": r["label"].cpu().numpy(),
                "face_index": r["face_index"].cpu().numpy(),
                "subject": r["subject"].cpu().numpy(), "params": r["params"].cpu().numpy(),
                "background": r["background"].cpu().numpy(), "bg_box": r["bg_box"].cpu().numpy()}

    def part_limit(self) -> int:
        """Parts of several batches: the device works on large batches."""
        return 4 * BATCH

    def render_part(self, first: int, n: int):
        cfg = self.job.cfg
        buf = self.new_buffer(n)
        for a in range(first, first + n, BATCH):
            s = self._batch(np.arange(a, min(a + BATCH, first + n), dtype=np.int64))
            imgs = s["image"]
            blobs = [None] * len(imgs)
            if cfg.encoding == "jpeg":
                pool = thread_pool(max(1, os.cpu_count() or 1), "encode")
                blobs = list(pool.map(lambda im: encode_jpeg(im if im.shape[2] == 3 else im[..., 0],
                                                             cfg.jpeg_quality), imgs))
            for j in range(len(imgs)):
                buf.add(imgs[j], s["mask"][j], s["label"][j], s["landmarks"][j], s["face_index"][j],
                        s["subject"][j], s["params"][j], s["background"][j], s["bg_box"][j], blob=blobs[j])
        return buf


def render_shards(faces, backgrounds, out, cfg=None, device: str = "cpu", **kw) -> dict:
    """:func:`ferdata.render.run.render` with the torch renderer on ``device`` (``ferdata render --device``).

    Same shards, manifest, resume and atomic writes; ``kw`` are ``render``'s (coco_split,
    shards, workers, executor, scheduler, on_shard).
    """
    from ..render.run import render

    return render(faces, backgrounds, out, cfg, device=device, context=TorchRenderContext, **kw)
