"""Sample the random parameters of one render (pure: generator + config -> vector).

Every sample ``i`` of face ``f`` draws from
``numpy.random.default_rng(SeedSequence(seed, spawn_key=(f, i)))``, so a sample is
the same whatever the sharding, worker count or resume point. The parameters are
a flat float32 vector (names in :data:`PARAM_NAMES`) stored with every sample.
"""
from __future__ import annotations

import numpy as np

from ..config import RenderConfig
from . import fast_rng

PARAM_NAMES = (
    "flip", "scale", "angle", "tx", "ty",                 # geometry (tx, ty in px of the output)
    "p0x", "p0y", "p1x", "p1y", "p2x", "p2y", "p3x", "p3y",  # perspective corner offsets (px)
    "bg_pick", "crop_u", "crop_v",                        # background choice / crop position in [0,1)
    "lum_w",                                              # luminance factor actually applied (compose)
    "erode", "feather",                                   # alpha (px)
    "brightness", "contrast", "gamma", "blur_sigma", "noise_sigma", "noise_seed",
)
P = {name: i for i, name in enumerate(PARAM_NAMES)}
NOISE_SEED_MAX = 1 << 24  # exactly representable in float32
N_UNIFORMS = 25  # uniforms drawn per sample, in one block


def sample_rng(seed: int, face: int, i: int) -> np.random.Generator:
    """The generator of sample ``i`` of face ``face``."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(face), int(i))))


def sample_params(rng: np.random.Generator, cfg: RenderConfig) -> np.ndarray:
    """Draw one parameter vector (float32, len(PARAM_NAMES)).

    The draw order is fixed (and part of the schema): changing it changes every
    render, so it is versioned with the shard schema.
    """
    return params_from_uniforms(rng.random(N_UNIFORMS)[None], cfg)[0]


def sample_uniforms(seed: int, faces, samples) -> np.ndarray:
    """The (n, N_UNIFORMS) float64 uniforms of samples ``samples[j]`` of faces ``faces[j]``.

    Row j equals ``sample_rng(seed, faces[j], samples[j]).random(N_UNIFORMS)``: the
    replay source of the batched torch renderer (docs/rendering.md).
    """
    faces = np.asarray(faces).ravel()
    samples = np.asarray(samples).ravel()
    if fast_rng.supported(seed, faces, samples):  # the same doubles, ~30x faster
        return fast_rng.uniforms(seed, faces, samples, N_UNIFORMS)
    out = np.empty((len(faces), N_UNIFORMS), np.float64)
    for j, (f, i) in enumerate(zip(faces.tolist(), samples.tolist())):
        out[j] = sample_rng(seed, f, i).random(N_UNIFORMS)
    return out


def params_from_uniforms(u: np.ndarray, cfg: RenderConfig) -> np.ndarray:
    """Parameter vectors (n, len(PARAM_NAMES)) float32 from uniforms (n, N_UNIFORMS) in [0,1).

    The one place the uniforms become parameters, for the shard renderer (one row)
    and the torch renderer (a batch): both get the same vectors from the same draws.
    """
    u = np.asarray(u, np.float64)
    s = cfg.size
    p = np.zeros((u.shape[0], len(PARAM_NAMES)), np.float32)
    p[:, P["flip"]] = (u[:, 0] < cfg.flip).astype(np.float64)
    p[:, P["scale"]] = cfg.scale_min + (cfg.scale_max - cfg.scale_min) * u[:, 1]
    p[:, P["angle"]] = cfg.rotation * (2 * u[:, 2] - 1)
    p[:, P["tx"]] = cfg.translate * s * (2 * u[:, 3] - 1)
    p[:, P["ty"]] = cfg.translate * s * (2 * u[:, 4] - 1)
    if cfg.perspective > 0:
        p[:, P["p0x"]:P["p3y"] + 1] = cfg.perspective * s * (2 * u[:, 5:13] - 1)
    p[:, P["bg_pick"]] = u[:, 13]
    p[:, P["crop_u"]] = u[:, 14]
    p[:, P["crop_v"]] = u[:, 15]
    p[:, P["lum_w"]] = 1.0
    p[:, P["erode"]] = cfg.erode if cfg.erode is not None else s / 64.0
    p[:, P["feather"]] = cfg.feather if cfg.feather is not None else s / 32.0
    p[:, P["brightness"]] = cfg.brightness_min + (cfg.brightness_max - cfg.brightness_min) * u[:, 16]
    p[:, P["contrast"]] = 1.0 + cfg.contrast * (2 * u[:, 17] - 1)
    p[:, P["gamma"]] = 1.0 + cfg.gamma * (2 * u[:, 18] - 1)
    p[:, P["blur_sigma"]] = np.where(u[:, 20] < cfg.blur_p, u[:, 19] * cfg.blur_sigma * s / 128.0, 0.0)
    p[:, P["noise_sigma"]] = u[:, 21] * cfg.noise * 255.0
    p[:, P["noise_seed"]] = np.floor(u[:, 22] * NOISE_SEED_MAX)
    return p


def identity_photometric(p: np.ndarray) -> np.ndarray:
    """A copy of ``p`` with brightness/contrast/gamma/blur/noise switched off (for tests)."""
    q = p.copy()
    q[P["brightness"]] = 1.0
    q[P["contrast"]] = 1.0
    q[P["gamma"]] = 1.0
    q[P["blur_sigma"]] = 0.0
    q[P["noise_sigma"]] = 0.0
    return q


def background_index(p: np.ndarray, n_backgrounds: int) -> int:
    """Index into the background id list picked by ``p``."""
    return min(int(p[P["bg_pick"]] * n_backgrounds), n_backgrounds - 1)
