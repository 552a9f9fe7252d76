"""Render a face store into deterministic, resumable HDF5 shards.

Global sample ``g`` is sample ``i = g // F`` of face ``f = g % F`` (F faces), so
every shard holds all faces round-robin (class balance in every shard) and shard
``k`` (samples ``k*shard_size ...``) is fully defined by (config, face store, k).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .backgrounds import BackgroundSource
from ..config import MAX_PER_FACE, MAX_SHARDS, RenderConfig
from ..errors import FerdataError
from ..faces.store import FaceStore
from ..shards.manifest import complete_shards, init_manifest, record_shard, shard_name
from ..atomic import remove_dead_temps
from ..shards.writer import ShardBuffer, write_shard
from .bg_lightness import LightnessCache
from .compose import PreparedFace, compose, prepare_face
from .identity import face_store_hash, identity_hash, legacy_matches, render_identity
from .params import (PARAM_NAMES, background_index, params_from_uniforms, sample_params, sample_rng,
                     sample_uniforms)
from .parts import Assembly, part_limit, plan_parts

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RenderJob:
    """Everything a worker needs to make any shard (picklable, small)."""

    faces: str                      # face store path
    backgrounds: str                # COCO root or image folder
    out: str
    cfg: RenderConfig               # resolved
    coco_split: Optional[str] = None
    device: Optional[str] = None    # None: this renderer; "cpu"/"cuda[:N]": the torch renderer
    context: Optional[Callable] = None  # per-process context class for ``device`` (handed in by the caller)

    @property
    def key(self):
        """What the per-process context depends on (not ``out``)."""
        ctx = None if self.context is None else f"{self.context.__module__}.{self.context.__qualname__}"
        return (self.faces, self.backgrounds, self.coco_split, self.device, ctx,
                json.dumps(dataclasses.asdict(self.cfg), sort_keys=True, default=str))

    @property
    def renderer(self) -> str:
        """Which renderer makes the shards: ``"cpu"`` or ``"torch:<device type>"`` (recorded)."""
        return "cpu" if self.device is None else f"torch:{str(self.device).split(':')[0]}"


class RenderContext:
    """Per-process state: the face store in memory, prepared faces, background cache."""

    def __init__(self, job: RenderJob):
        self.job = job
        cfg = job.cfg
        with FaceStore(job.faces) as fs:
            self.n_faces = len(fs)
            self.images = fs.images[:]
            self.masks = fs.masks[:]
            self.landmarks = fs.landmarks
            self.labels = fs.labels
            self.classes = fs.classes
            subjects = fs.subjects
        self.subject_names = sorted(set(subjects))
        sidx = {s: i for i, s in enumerate(self.subject_names)}
        self.subject_ids = np.array([sidx[s] for s in subjects], np.int32)
        self.bg = open_backgrounds(job.backgrounds, job.coco_split, cfg)
        self._prepared: dict[int, PreparedFace] = {}
        self.bg_lightness = LightnessCache()  # L planes of reused backgrounds (same bytes, less work)

    def prepared(self, f: int) -> PreparedFace:
        pf = self._prepared.get(f)
        if pf is None:
            lm = self.landmarks[f]
            if not np.isfinite(lm).all():
                lm = np.full((68, 2), np.nan)
            pf = prepare_face(self.images[f], self.masks[f], lm, self.job.cfg.size)
            self._prepared[f] = pf
        return pf

    @property
    def total(self) -> int:
        return self.n_faces * self.job.cfg.per_face

    def n_shards(self) -> int:
        return -(-self.total // self.job.cfg.shard_size)

    def part_params(self, first: int, n: int) -> np.ndarray:
        """The parameter vectors of samples ``first ... first + n - 1`` in one vectorised draw
        (the same float32 rows as one generator per sample, ``ferdata.render.fast_rng``)."""
        g = np.arange(first, first + n, dtype=np.int64)
        return params_from_uniforms(sample_uniforms(self.job.cfg.seed, g % self.n_faces, g // self.n_faces),
                                    self.job.cfg)

    def render_sample(self, g: int, photometric_on: bool = True, p: Optional[np.ndarray] = None) -> dict:
        """Sample ``g``; ``p``: its parameter vector when the caller drew it (``part_params``)."""
        cfg = self.job.cfg
        f, i = g % self.n_faces, g // self.n_faces
        p = sample_params(sample_rng(cfg.seed, f, i), cfg) if p is None else p
        bg_id = int(self.bg.ids[background_index(p, len(self.bg))])
        img = self.bg.load(bg_id)
        L = self.bg_lightness.get(bg_id, img, cfg.size) if cfg.luminance != "none" else None
        out = compose(self.prepared(f), img, p, cfg, photometric_on=photometric_on, bg_lightness=L)
        out.update(face_index=f, sample=i, background=bg_id, label=int(self.labels[f]),
                   subject=int(self.subject_ids[f]))
        return out

    def shard_span(self, k: int) -> tuple[int, int]:
        """(first global sample, sample count) of shard ``k``."""
        cfg = self.job.cfg
        first = k * cfg.shard_size
        n = min(cfg.shard_size, self.total - first)
        if n <= 0:
            raise FerdataError(f"shard {k} is out of range (the render has {self.n_shards()} shards)")
        return first, n

    def new_buffer(self, n: int) -> ShardBuffer:
        cfg = self.job.cfg
        return ShardBuffer(n, cfg.size, 1 if cfg.gray else 3, cfg.encoding, len(PARAM_NAMES), cfg.jpeg_quality)

    def write(self, k: int, first: int, buf: ShardBuffer, out) -> dict:
        """Write shard ``k`` from ``buf`` (attrs per docs/shards.md) and return its manifest entry."""
        cfg = self.job.cfg
        attrs = {
            "classes": self.classes, "master_seed": cfg.seed, "shard_index": k, "first_sample": first,
            "config": dataclasses.asdict(cfg), "param_names": list(PARAM_NAMES),
            "subjects": self.subject_names, "n_faces": self.n_faces, "per_face": cfg.per_face,
            "renderer": self.job.renderer,
        }
        entry = write_shard(Path(out) / shard_name(k), buf, attrs)
        entry.update(index=k, first_sample=first)
        return entry

    def render_part(self, first: int, n: int) -> ShardBuffer:
        """Samples ``first ... first + n - 1`` in a buffer of their own (a part of a shard)."""
        buf = self.new_buffer(n)
        params = self.part_params(first, n)
        for j, g in enumerate(range(first, first + n)):
            s = self.render_sample(g, p=params[j])
            buf.add(s["image"], s["mask"], s["label"], s["landmarks"], s["face_index"], s["subject"],
                    s["params"], s["background"], s["bg_box"])
        return buf

    def part_limit(self) -> int:
        """Most samples per task (``ferdata.render.parts``)."""
        return part_limit(self.job.cfg.size)

    def render_shard(self, k: int, out) -> dict:
        first, n = self.shard_span(k)
        return self.write(k, first, self.render_part(first, n), out)


def open_backgrounds(path, split, cfg: RenderConfig) -> BackgroundSource:
    return BackgroundSource.from_path(path, split, exclude_categories=tuple(cfg.exclude_categories),
                                      include_categories=tuple(cfg.include_categories))


_CONTEXTS: dict = {}


def get_context(job: RenderJob) -> RenderContext:
    """The per-process context of ``job`` (built once per worker)."""
    ctx = _CONTEXTS.get(job.key)
    if ctx is None:
        _CONTEXTS.clear()
        # the torch renderer's context is handed in by the caller: ferdata.render never imports torch
        ctx = RenderContext(job) if job.context is None else job.context(job)
        _CONTEXTS[job.key] = ctx
    return ctx


def _one_cv2_thread_in_workers() -> None:
    """In a worker process, OpenCV runs on one thread: the workers already fill the cores,
    and cv2's own pool on top of them only adds switching (same bytes either way)."""
    import multiprocessing

    if multiprocessing.parent_process() is not None:
        import cv2

        cv2.setNumThreads(1)


def _part_task(arg):
    """Render part ``(offset, n)`` of shard ``k``; returns ``(buffer, seconds)``. The parent
    joins the parts and writes the shard (``ferdata.render.parts``)."""
    job, k, offset, n = arg
    _one_cv2_thread_in_workers()
    t = time.perf_counter()
    ctx = get_context(job)
    part = ctx.render_part(ctx.shard_span(k)[0] + offset, n)
    return part, time.perf_counter() - t


def parse_shard_range(spec: Optional[str], n_shards: int) -> range:
    """``'a:b'`` (either side optional; ``b`` past the end is clipped) or ``'k'`` -> shard indices.

    The range must hold at least one of the render's ``n_shards`` shards: an empty,
    reversed, negative or out-of-range one is an error (not a silent "0 shards made").
    """
    if spec is None or spec == "":
        return range(n_shards)
    try:
        if ":" in spec:
            a, b = spec.split(":", 1)
            a = int(a) if a.strip() else 0
            b = int(b) if b.strip() else n_shards
        else:
            a = int(spec)
            b = a + 1
    except ValueError:
        raise FerdataError(f"--shards {spec!r}: expected a:b or an index") from None
    if a < 0 or b < 0:
        raise FerdataError(f"--shards {spec!r}: shard indices start at 0")
    if b <= a:
        raise FerdataError(f"--shards {spec!r}: empty range (the end must be after the start)")
    if a >= n_shards:
        raise FerdataError(f"--shards {spec!r}: out of range, this render has {n_shards} shard(s) "
                           f"(0..{n_shards - 1})")
    return range(a, min(b, n_shards))


def _header(cfg: RenderConfig, ctx: RenderContext, faces: Path, backgrounds, coco_split) -> dict:
    """The manifest header; ``config_hash`` is the hash of the content ``identity``."""
    cfg_d = dataclasses.asdict(cfg)
    ids_sha = hashlib.sha256(ctx.bg.ids.tobytes()).hexdigest()
    identity = render_identity(cfg_d, face_store_hash(faces), ids_sha)
    if ctx.job.renderer != "cpu":  # torch renders differ from these by rounding: never mixed in a folder
        identity["renderer"] = ctx.job.renderer
    return {
        "config": cfg_d, "identity": identity, "config_hash": identity_hash(identity),
        "face_store": {"path": str(faces.resolve()), "content_sha256": identity["face_store_sha256"],
                       "faces": ctx.n_faces},
        "backgrounds": {"path": str(Path(backgrounds).resolve()), "split": coco_split, "count": len(ctx.bg),
                        "ids_sha256": ids_sha},
        "classes": ctx.classes, "subjects": ctx.subject_names, "param_names": list(PARAM_NAMES),
        "total_samples": ctx.total, "shard_size": cfg.shard_size, "num_shards": ctx.n_shards(),
        "size": cfg.size, "encoding": cfg.encoding, "channels": 1 if cfg.gray else 3,
        "renderer": ctx.job.renderer,
    }


def render(faces, backgrounds, out, cfg: RenderConfig | None = None, coco_split: Optional[str] = None,
           shards: Optional[str] = None, workers: int = 1, executor: str = "process",
           scheduler: Optional[str] = None, on_shard: Optional[Callable[[dict], None]] = None,
           device: Optional[str] = None, context: Optional[Callable] = None,
           on_progress: Optional[Callable[[dict], None]] = None) -> dict:
    """Render ``faces`` (a face store) on ``backgrounds`` into shards in ``out``.

    Resumable: shards already complete in ``out/manifest.json`` (file present with the
    listed size) are skipped. Whether ``out`` holds the same render is decided by
    content (:mod:`ferdata.render.identity`), not by how the paths are spelled; a
    folder rendered with another configuration, face store content or background set
    is refused, naming what differs. Temporary files of this host's killed runs are
    removed.

    Workers render parts of shards (:mod:`ferdata.render.parts`); the parent joins them
    and writes each shard atomically as soon as it is complete.

    ``device`` ("cpu", "cuda", "cuda:N") with ``context`` (the torch renderer's per-process
    context class, ``ferdata.torch.render_shards.TorchRenderContext``; or call
    ``ferdata.torch.render_shards.render_shards``) makes the shards with the batched torch
    renderer (same schema, ``renderer`` recorded in the manifest and every shard); None
    (default) uses this module's renderer. This module never imports torch.

    ``on_shard(entry)``: each shard written; ``on_progress({"stage", "done", "total"})``:
    what the run waits for and samples done of those to do, once per part.

    Returns a summary dict (shards made/skipped, samples, seconds, samples/s).
    """
    cfg = (cfg or RenderConfig()).validate().resolved()
    if (device is None) != (context is None):
        raise FerdataError("render: device and context go together (the torch renderer's context makes the "
                           "shards on device; ferdata.torch.render_shards.render_shards passes both)")
    if int(workers) < 1:
        raise FerdataError(f"workers must be >= 1, got {workers}")
    out, faces = Path(out), Path(faces)
    _check_paths(faces, out)
    job = RenderJob(str(faces.resolve()), str(Path(backgrounds).resolve()), str(out.resolve()), cfg, coco_split,
                    device, context)
    if cfg.per_face > MAX_PER_FACE:
        raise FerdataError(f"per_face {cfg.per_face}: a shard render makes at most {MAX_PER_FACE} per face "
                           "(FERAtt: 9231); live renders (train_on=live) have no such bound")
    tell = on_progress or (lambda e: None)
    tell({"stage": "loading faces and backgrounds", "done": 0, "total": None})
    ctx = get_context(job)  # validates face store and backgrounds in this process, before any worker
    if ctx.n_shards() > MAX_SHARDS:
        raise FerdataError(f"{ctx.n_faces} faces x per_face {cfg.per_face} = {ctx.total} samples make "
                           f"{ctx.n_shards()} shards of {cfg.shard_size}, more than {MAX_SHARDS}: lower per_face "
                           "or raise shard_size")
    wanted = parse_shard_range(shards, ctx.n_shards())
    header = _header(cfg, ctx, faces, backgrounds, coco_split)
    manifest = init_manifest(out, header, accept=lambda m: legacy_matches(m, header["identity"], faces))
    remove_dead_temps(out, "shard-*.h5.tmp-*")
    done = complete_shards(out, manifest)
    todo = [k for k in wanted if shard_name(k) not in done]
    t = time.perf_counter()
    try:
        made, samples = _run_parts(job, ctx, todo, executor, workers, scheduler, on_shard, tell)
    finally:  # temps of workers killed mid-shard (the pool is shut down: their pids are gone)
        remove_dead_temps(out, "shard-*.h5.tmp-*")
    dt = time.perf_counter() - t
    return {"out": str(out), "shards_made": made, "shards_skipped": len(wanted) - len(todo),
            "num_shards": ctx.n_shards(), "samples": samples, "seconds": round(dt, 3),
            "samples_per_s": round(samples / dt, 1) if dt > 0 and samples else None}


def _check_paths(faces: Path, out: Path) -> None:
    if not faces.exists():
        raise FerdataError(f"{faces}: face store does not exist (make one with `ferdata ingest` or `ferdata sample`)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{id(out)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise FerdataError(f"{out}: output folder is not writable ({exc.strerror or exc})") from exc


def _run_parts(job: RenderJob, ctx: RenderContext, todo, executor, workers, scheduler, on_shard, tell):
    """Render shards ``todo`` as parts on the workers; the parent joins and writes each shard."""
    from ..parallel import run_tasks

    spans = {k: ctx.shard_span(k) for k in todo}   # shard -> (first sample, samples)
    parts = plan_parts([(k, n) for k, (_, n) in spans.items()], workers if executor != "serial" else 1,
                       ctx.part_limit())
    total = sum(n for _, n in spans.values())
    stage = f"starting {workers} workers" if workers > 1 and executor != "serial" else "rendering"
    tell({"stage": stage, "done": 0, "total": total})
    asm = Assembly(ctx.new_buffer)
    made = samples = 0
    for (_, k, offset, n), (part, sec) in run_tasks(_part_task, [(job, k, o, n) for k, o, n in parts],
                                                    executor, workers, scheduler):
        samples += n
        whole = asm.add(k, spans[k][1], offset, part, sec)
        if whole is not None:
            tell({"stage": f"writing shard {k}", "done": samples, "total": total})
            entry = ctx.write(k, spans[k][0], whole[0], job.out)
            entry["seconds"] = round(whole[1], 3)
            record_shard(job.out, shard_name(k), entry)
            made += 1
            if on_shard:
                on_shard(entry)
        tell({"stage": "rendering", "done": samples, "total": total})
    return made, samples
