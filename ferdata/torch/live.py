"""Fresh renders every epoch, straight from the torch renderer (no shards).

``LiveRenderLoader(renderer, batch_size, epoch_size)`` yields device batches made by
:class:`ferdata.torch.render.TorchRenderer`. Epoch ``e`` renders the global samples
``e·epoch_size … (e+1)·epoch_size − 1`` (modulo the renderer's ``len``), so every epoch
sees new renders of every face (round-robin, as in the shards), in an order that is a
function of (seed, epoch) only. DDP ranks take disjoint, equal slices of that order;
``state_dict()`` / ``load_state_dict()`` resume mid-epoch exactly (docs/torch.md).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import FerdataError
from .render import sample_indices


def to_global(local: np.ndarray, face_indices: np.ndarray, n_faces: int) -> np.ndarray:
    """Indices over a subset of faces -> global sample indices.

    Local sample ``l`` is sample ``l // m`` of face ``face_indices[l % m]`` (m faces): the
    same round-robin as the shards, restricted to those faces (e.g. a fold's training side).
    """
    m = len(face_indices)
    return (local // m) * n_faces + face_indices[local % m]


def epoch_order(seed: int, epoch: int, epoch_size: int, total: int) -> np.ndarray:
    """The global sample indices of ``epoch`` in the order they are served (int64)."""
    base = (np.int64(epoch) * epoch_size + np.arange(epoch_size, dtype=np.int64)) % total
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch)]))
    return base[rng.permutation(epoch_size)]


class LiveRenderLoader:
    """An iterable of rendered device batches (dicts of tensors, see ``TorchRenderer.render``).

    Parameters
    ----------
    renderer : TorchRenderer
    batch_size : samples per batch (per rank)
    epoch_size : samples per epoch over all ranks (default: one per face × 64)
    seed : order seed (the renders themselves follow the renderer's config seed)
    rank, world_size : DDP position; each rank serves ``epoch_size // world_size`` samples
    drop_last : drop a last incomplete batch (default True, as training wants)
    clean : also return FERAtt's attention target (``clean``) in every batch
    photometric : apply the photometric augmentation (default True)
    face_indices : render only these faces of the face store (default: all), e.g. the
        training side of a fold — a held-out subject is never rendered
    """

    def __init__(self, renderer, batch_size: int, epoch_size: Optional[int] = None, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool = True, clean: bool = False,
                 photometric: bool = True, face_indices=None):
        if batch_size < 1:
            raise FerdataError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise FerdataError(f"rank {rank} is not in 0..{world_size - 1}")
        self.renderer = renderer
        self.faces = np.arange(renderer.n_faces, dtype=np.int64)
        if face_indices is not None:
            try:
                self.faces = np.unique(sample_indices(face_indices, renderer.n_faces, "face"))
            except (TypeError, IndexError, ValueError) as exc:
                raise FerdataError(f"face_indices: {exc} (the face store has {renderer.n_faces} faces)") from None
        self.batch_size = int(batch_size)
        if epoch_size is not None and int(epoch_size) < 1:
            raise FerdataError(f"epoch_size must be >= 1 (or None for 64 per face), got {epoch_size}")
        self.epoch_size = int(epoch_size or self.faces.size * 64)
        if self.epoch_size < world_size:
            raise FerdataError(f"epoch_size {self.epoch_size} is smaller than the world size {world_size}")
        if drop_last and self.epoch_size // world_size < self.batch_size:
            raise FerdataError(f"epoch_size {self.epoch_size} gives {self.epoch_size // world_size} samples per rank, "
                               f"fewer than one batch of {self.batch_size} (drop_last): no batch at all; "
                               "raise epoch_size or lower batch_size")
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.drop_last, self.clean, self.photometric = drop_last, clean, photometric
        self.epoch, self._start, self._served = 0, 0, 0

    @property
    def per_rank(self) -> int:
        return self.epoch_size // self.world_size

    @property
    def num_samples(self) -> int:
        """Samples this rank serves per epoch."""
        return len(self) * self.batch_size if self.drop_last else self.per_rank

    @property
    def labels(self) -> np.ndarray:
        """Canonical labels of the rendered faces (each is rendered equally often)."""
        return self.renderer.labels[self.faces]

    def __len__(self) -> int:
        n = self.per_rank
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._start, self._served = int(epoch), 0, 0

    def indices(self) -> np.ndarray:
        """This rank's global sample indices for the current epoch, in serving order."""
        total = self.faces.size * self.renderer.cfg.per_face
        order = epoch_order(self.seed, self.epoch, self.epoch_size, total)
        return to_global(order[self.rank::self.world_size][:self.per_rank], self.faces, self.renderer.n_faces)

    def __iter__(self):
        idx = self.indices()
        start, self._start = self._start, 0
        for b in range(start, len(self)):
            self._served = b + 1
            yield self.renderer.render(idx[b * self.batch_size:(b + 1) * self.batch_size],
                                       photometric=self.photometric, clean=self.clean)

    def state_dict(self) -> dict:
        """Where this loader stands: resume with ``load_state_dict`` and iterate on."""
        return {"epoch": self.epoch, "batches": self._served, "seed": self.seed,
                "epoch_size": self.epoch_size, "batch_size": self.batch_size, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        for k in ("seed", "epoch_size", "batch_size", "world_size"):
            if state.get(k) != getattr(self, k):
                raise FerdataError(f"live loader state: {k} was {state.get(k)!r}, this loader has "
                                   f"{getattr(self, k)!r}")
        self.epoch, self._start = int(state["epoch"]), int(state["batches"])
        self._served = self._start
