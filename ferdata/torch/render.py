"""The shard renderer's generator as a batched torch renderer (CPU or GPU).

``TorchRenderer(faces, backgrounds, cfg, device)`` holds the prepared faces and a
background pool on the device and renders a batch of global sample indices in one
pass (one warp, one Lab conversion, one blur per batch): the same parameters as
:mod:`ferdata.render` (replayed from ``sample_params``' draws), so a torch sample
equals its shard twin within interpolation rounding. See docs/rendering.md
("The torch renderer") for the tolerances and the ``params="device"`` mode.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import cv2
import numpy as np
import torch

from ..config import RenderConfig
from ..errors import FerdataError
from ..faces.store import FaceStore
from ..labels import MIRROR68
from ..render.augment import noise_bank
from ..render.compose import prepare_face
from ..render.params import N_UNIFORMS, P, PARAM_NAMES, params_from_uniforms, sample_uniforms
from . import _render_ops as ops
from ._cpu_pool import fork_safe, map_chunks

_MIRROR = np.array(MIRROR68)


def geometry_matrices(p: np.ndarray, size: int) -> np.ndarray:
    """(B,3,3) float64: the batched :func:`ferdata.render.compose.geometry_matrix`."""
    B = p.shape[0]
    c = (size - 1) / 2.0
    flip = p[:, P["flip"]] > 0.5
    Fm = np.tile(np.eye(3), (B, 1, 1))
    Fm[flip, 0, 0] = -1.0
    Fm[flip, 0, 2] = size - 1
    a = np.deg2rad(p[:, P["angle"]].astype(np.float64))
    s = p[:, P["scale"]].astype(np.float64)
    ca, sa = np.cos(a) * s, np.sin(a) * s
    A = np.zeros((B, 3, 3))
    A[:, 0, 0], A[:, 0, 1], A[:, 1, 0], A[:, 1, 1], A[:, 2, 2] = ca, sa, -sa, ca, 1.0
    T1 = np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1.0]])
    T2 = np.tile(np.eye(3), (B, 1, 1))
    T2[:, 0, 2] = c + p[:, P["tx"]].astype(np.float64)
    T2[:, 1, 2] = c + p[:, P["ty"]].astype(np.float64)
    M = T2 @ A @ T1 @ Fm
    off = p[:, P["p0x"]:P["p3y"] + 1].astype(np.float64)
    src = np.array([[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]], np.float32)
    for j in np.flatnonzero(np.any(off != 0, axis=1)):  # perspective only: rare, per sample
        Hp = cv2.getPerspectiveTransform(src, (src + off[j].reshape(4, 2)).astype(np.float32))
        M[j] = Hp @ M[j]
    return M


def transform_landmarks(lm: np.ndarray, M: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """(B,68,2) landmarks through (B,3,3) matrices; flipped samples re-indexed by the mirror map."""
    h = np.concatenate([lm, np.ones(lm.shape[:2] + (1,))], -1) @ M.transpose(0, 2, 1)
    out = h[..., :2] / h[..., 2:3]
    out[flip] = out[flip][:, _MIRROR]
    return out


def device_uniforms(seed: int, faces: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """Counter-based uniforms (B, N_UNIFORMS) float64 keyed by (seed, face, i, k), on the device.

    A stateless integer hash (32-bit murmur3 finaliser over the key words), so any
    sample's draws are one function of its key on any device: the same distributions
    as ``sample_params`` (tested), not the same draws.
    """
    dev = faces.device
    k = torch.arange(N_UNIFORMS, device=dev, dtype=torch.int64)[None]
    words = [torch.full_like(faces, int(seed) & 0xFFFFFFFF)[:, None], faces[:, None].to(torch.int64),
             samples[:, None].to(torch.int64)]

    def mix(h, w):
        h = (h ^ (w & 0xFFFFFFFF)) & 0xFFFFFFFF
        h = (h * 0x85EBCA6B) & 0xFFFFFFFF
        h = h ^ (h >> 13)
        h = (h * 0xC2B2AE35) & 0xFFFFFFFF
        return h ^ (h >> 16)

    def stream(salt):
        h = torch.full((faces.shape[0], N_UNIFORMS), salt, device=dev, dtype=torch.int64)
        for w in words:
            h = mix(h, w)
        return mix(mix(h, k), k * 0x9E3779B9)
    hi, lo = stream(0x243F6A88), stream(0x13198A2E)
    return (((hi >> 6) << 27) | (lo >> 5)).to(torch.float64) / 9007199254740992.0  # 53 bits



def _usable(device) -> torch.device:
    """``device`` as a torch.device that this machine has (one error line otherwise)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise FerdataError(f"device {device!r}: not a torch device ({exc})") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise FerdataError(f"device {device!r}: CUDA is not available here (use cpu)")
        if dev.index is not None and dev.index >= n:
            raise FerdataError(f"device {device!r}: this machine has {n} CUDA device(s)")
    elif dev.type not in ("cpu", "mps"):
        raise FerdataError(f"device {device!r}: the torch renderer runs on cpu or cuda")
    return dev


def sample_indices(indices, n: int, what: str = "sample") -> np.ndarray:
    """``indices`` as int64 in ``0..n-1``, checked like a Python sequence's subscripts.

    Integers only (Python ints, NumPy/torch integer arrays; a float, a bool or a string is a
    TypeError naming it, never truncated); ``-n <= i < n`` (negatives count from the end),
    else IndexError naming the index given; an empty batch is a ValueError.
    """
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    arr = np.asarray(indices)
    if arr.size == 0 and not isinstance(indices, str):
        raise ValueError(f"empty batch: give at least one {what} index")
    if arr.dtype == object or arr.dtype.kind not in "iu":
        flat = arr.ravel().tolist() if arr.dtype != object else list(np.ravel(arr))
        bad = next((x for x in flat if isinstance(x, bool) or not isinstance(x, (int, np.integer))), flat[:1] or [indices])
        raise TypeError(f"{what} indices must be integers, got {bad!r} ({type(bad).__name__})")
    g = arr.astype(np.int64, copy=False).ravel()
    if g.size == 0:
        raise ValueError(f"empty batch: give at least one {what} index")
    bad = (g < -n) | (g >= n)
    if bad.any():
        raise IndexError(f"{what} index {int(g[np.argmax(bad)])} out of range (0..{n - 1}, or -{n}..-1)")
    return np.where(g < 0, g + n, g)


class TorchRenderer:
    """Render batches of global sample indices on ``device`` (see the module docstring).

    Parameters
    ----------
    faces : path of a face store (``faces.h5``), or a shard renderer's ``RenderContext``
        (``render --device``: its faces are reused, not read a second time)
    backgrounds : a COCO root / image folder (as ``ferdata render``) or a
        :class:`ferdata.render.backgrounds.BackgroundSource`; every background is decoded once
        and held on the device (``max_backgrounds`` caps the pool: then ``bg_pick``
        indexes the first ``max_backgrounds`` ids and renders differ from the shards').
    cfg : RenderConfig (resolved here)
    device : "cpu", "cuda", "cuda:N" or a torch.device
    params : "replay" (the shard renderer's draws) or "device" (counter-based draws)
    """

    def __init__(self, faces, backgrounds, cfg: Optional[RenderConfig] = None, device="cpu",
                 coco_split: Optional[str] = None, params: str = "replay",
                 max_backgrounds: Optional[int] = None):
        self.cfg = cfg = (cfg or RenderConfig()).validate().resolved()
        if cfg.blend == "poisson" or (cfg.blend == "alpha" and cfg.alpha_mode != "gaussian"):
            raise FerdataError(f"the torch renderer supports blend=alpha (gaussian) and blend=hard, not "
                               f"blend={cfg.blend!r} alpha_mode={cfg.alpha_mode!r}: use the shard renderer")
        if params not in ("replay", "device"):
            raise FerdataError(f"params must be 'replay' or 'device', got {params!r}")
        self.params_mode = params
        self.device = _usable(device)
        self._load_faces(faces)
        self._load_backgrounds(backgrounds, coco_split, max_backgrounds)
        self.noise = ops.noise_planes(noise_bank(cfg.size, 3), self.device)   # (3, 4S, 4S)

    # ----------------------------------------------------------------- loading
    def _load_faces(self, faces) -> None:
        from ..render.run import RenderContext

        S = self.cfg.size
        if isinstance(faces, RenderContext):  # a shard-render worker's context: its faces, not read again
            n, prepared = faces.n_faces, faces.prepared
            labels, self.classes = faces.labels, list(faces.classes)
            self.subject_names, ids = list(faces.subject_names), faces.subject_ids
        else:
            with FaceStore(faces) as fs:
                images, masks, lms = fs.images[:], fs.masks[:], fs.landmarks
                labels, self.classes, subjects = fs.labels, list(fs.classes), list(fs.subjects)
            n = len(images)
            self.subject_names = sorted(set(subjects))
            sidx = {s: i for i, s in enumerate(self.subject_names)}
            ids = [sidx[s] for s in subjects]

            def prepared(f):  # as RenderContext.prepared: unknown landmarks become NaN
                lm = lms[f] if np.isfinite(lms[f]).all() else np.full((68, 2), np.nan)
                return prepare_face(images[f], masks[f], lm, S)
        if n == 0:
            raise FerdataError(f"{faces}: the face store holds no face")
        self.n_faces = n
        self.labels = np.asarray(labels, np.int64)
        self.subject_ids = np.asarray(ids, np.int64)
        stack = np.empty((n, 4, S, S), np.uint8)
        self.landmarks = np.empty((n, 68, 2), np.float64)
        for f in range(n):
            pf = prepared(f)
            stack[f] = pf.rgba.transpose(2, 0, 1)
            self.landmarks[f] = pf.landmarks
        rgba = torch.from_numpy(stack)
        self.alpha = rgba[:, 3:].contiguous().to(self.device)        # (F,1,S,S): the mask's warp source
        # the RGB planes with a zero border (1 px before, 2 after), flat: ops.sample_pixels' source
        self.padded = torch.nn.functional.pad(rgba[:, :3], (1, 2, 1, 2)).contiguous().view(-1).to(self.device)

    def _load_backgrounds(self, backgrounds, split, limit) -> None:
        from ..render.backgrounds import BackgroundSource

        src = backgrounds
        if not isinstance(src, BackgroundSource):
            src = BackgroundSource.from_path(backgrounds, split, exclude_categories=tuple(self.cfg.exclude_categories),
                                             include_categories=tuple(self.cfg.include_categories))
        ids = src.ids[:limit] if limit else src.ids
        imgs = [src.load(int(i)) for i in ids]
        self.bg_ids = np.asarray(ids, np.int64)
        self.bg_h = np.array([im.shape[0] for im in imgs], np.int64)
        self.bg_w = np.array([im.shape[1] for im in imgs], np.int64)
        self.bg_base = np.concatenate([[0], np.cumsum(self.bg_h * self.bg_w * 3)[:-1]]).astype(np.int64)
        flat = np.concatenate([np.ascontiguousarray(im.transpose(2, 0, 1)).ravel() for im in imgs])  # planes
        self.bg_flat = torch.from_numpy(flat).to(self.device)

    def __len__(self) -> int:
        return self.n_faces * self.cfg.per_face

    # ----------------------------------------------------------------- params
    def params(self, indices) -> np.ndarray:
        """(B, K) float32 parameter vectors of global samples ``indices`` (before ``lum_w``)."""
        g = np.asarray(indices, np.int64).ravel()
        f, i = g % self.n_faces, g // self.n_faces
        if self.params_mode == "replay":
            u = sample_uniforms(self.cfg.seed, f, i)
        else:
            u = device_uniforms(self.cfg.seed, torch.from_numpy(f).to(self.device),
                                torch.from_numpy(i).to(self.device)).cpu().numpy()
        return params_from_uniforms(u, self.cfg)

    def _crop_boxes(self, p: np.ndarray):
        n = len(self.bg_ids)
        pick = np.minimum((p[:, P["bg_pick"]] * n).astype(np.int64), n - 1)
        h, w = self.bg_h[pick], self.bg_w[pick]
        side = np.minimum(np.minimum(h, w), self.cfg.size)
        x = np.minimum((p[:, P["crop_u"]] * (w - side + 1)).astype(np.int64), w - side)
        y = np.minimum((p[:, P["crop_v"]] * (h - side + 1)).astype(np.int64), h - side)
        return pick, np.stack([x, y, side], 1)

    # ----------------------------------------------------------------- render
    #: on a CPU, a large batch is rendered in chunks this size: its working set then stays in
    #: cache (benchmarks/render_torch.py), and the chunks run side by side, one per torch thread
    CPU_CHUNK = 32

    @torch.no_grad()
    def render(self, indices, photometric: bool = True, clean: bool = False) -> dict:
        """Render global samples ``indices`` (see :meth:`_render`); on a CPU in chunks of
        :attr:`CPU_CHUNK`, ``torch.get_num_threads()`` chunks at a time (a sample does not
        depend on its batch or its thread, so the result is the same)."""
        g = sample_indices(indices, len(self), "sample")
        if self.device.type != "cpu":
            return self._render(g, photometric, clean)
        with fork_safe():  # one thread in a child forked from a multi-threaded torch
            if g.size <= 2 * self.CPU_CHUNK:
                return self._render(g, photometric, clean)
            chunks = [g[a:a + self.CPU_CHUNK] for a in range(0, g.size, self.CPU_CHUNK)]
            threads = torch.get_num_threads()

            def one(c):
                with torch.no_grad():          # grad mode is per thread
                    return self._render(c, photometric, clean)
            parts = map_chunks(one, chunks, threads) if threads > 1 else [one(c) for c in chunks]
            return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def _render(self, indices, photometric: bool = True, clean: bool = False, lap=None) -> dict:
        """Render global samples ``indices`` (sample ``g // F`` of face ``g % F``).

        Returns a dict of device tensors: ``image`` (B,C,H,W) uint8, ``mask`` (B,H,W)
        bool, ``landmarks`` (B,68,2) float32, ``label`` (B,) int64 (canonical index),
        ``params`` (B,K) float32 (``lum_w`` filled in), ``face_index``, ``subject``,
        ``background`` (ids) and ``bg_box`` (B,4) int32; with ``clean=True`` also
        ``clean`` (B,3,H,W) uint8: the same face, luminance-matched and alpha-blended
        onto black with no photometric step (FERAtt's attention target).
        ``lap(name)``, when given, is called at the end of each stage (the benchmark's timer).
        """
        lap = lap or (lambda name: None)
        cfg, dev = self.cfg, self.device
        g = np.asarray(indices, np.int64).ravel()
        f = g % self.n_faces
        p = self.params(g)
        M = geometry_matrices(p, cfg.size)
        lap("params")
        fidx = torch.from_numpy(f).to(dev)
        face, hard, px = self._warp(fidx, M)
        lap("warp")
        pick, box = self._crop_boxes(p)
        bg8 = ops.gather_crops(self.bg_flat, torch.from_numpy(self.bg_base[pick]).to(dev),
                               torch.from_numpy(self.bg_w[pick]).to(dev), torch.from_numpy(self.bg_h[pick]).to(dev),
                               torch.from_numpy(box).to(dev), cfg.size)
        bg = bg8.to(torch.float32)
        lap("crops")
        face, w = ops.match_luminance(face, bg8, px, cfg.luminance, cfg.lum_min, cfg.lum_max)
        f32 = torch.zeros_like(bg).view(-1).scatter_(0, px.i3.reshape(-1), face.reshape(-1)).view(bg.shape)
        p[:, P["lum_w"]] = w.cpu().numpy()
        lap("luminance")
        if cfg.blend == "hard":
            a = hard[:, None].to(torch.float32)
        else:
            a = ops.soft_alpha(hard, float(p[0, P["erode"]]), float(p[0, P["feather"]]))
        cleaned = (a * f32 + 0.5).clamp_(0, 255).to(torch.uint8) if clean else None
        out = bg.lerp_(f32, a)                     # bg + a·(face - bg), in place
        lap("alpha+composite")
        pt = torch.from_numpy(p).to(dev)
        if photometric:
            out = ops.photometric(out, pt, self.noise)
        img = out.add_(0.5).clamp_(0, 255).to(torch.uint8)
        if cfg.gray:
            img = ops.rgb_to_gray_u8(img)
        lap("photometric")
        lm = transform_landmarks(self.landmarks[f], M, p[:, P["flip"]] > 0.5)
        res = {"image": img, "mask": hard, "landmarks": torch.from_numpy(lm.astype(np.float32)).to(dev),
               "label": torch.from_numpy(self.labels[f]).to(dev), "params": pt,
               "face_index": fidx, "subject": torch.from_numpy(self.subject_ids[f]).to(dev),
               "background": torch.from_numpy(self.bg_ids[pick]).to(dev),
               "bg_box": torch.from_numpy(np.c_[box[:, :2], box[:, 2:], box[:, 2:]].astype(np.int32)).to(dev)}
        if clean:
            res["clean"] = cleaned
        lap("outputs")
        return res

    def _warp(self, fidx: torch.Tensor, M: np.ndarray):
        """The faces ``fidx`` warped by ``M``: (RGB at the mask pixels (3,N) float32 whole levels,
        hard mask (B,S,S), the mask pixels). The mask is one ``grid_sample`` of the alpha planes;
        the RGB is sampled at the mask pixels only (the composite uses nothing else)."""
        grid = ops.source_grid(torch.from_numpy(M).to(self.device), self.cfg.size)
        alpha = ops.warp(self.alpha.index_select(0, fidx).to(torch.float32), grid)
        hard = alpha[:, 0] >= 127.5       # round(alpha) > 127 <=> alpha >= 127.5 (127.5 rounds to 128)
        px = ops.mask_pixels(hard)
        return ops.sample_pixels(self.padded, fidx, grid, px).round_(), hard, px

    def describe(self) -> dict:
        return {"renderer": "torch", "device": str(self.device), "params": self.params_mode,
                "faces": self.n_faces, "backgrounds": int(len(self.bg_ids)),
                "config": dataclasses.asdict(self.cfg), "param_names": list(PARAM_NAMES)}
