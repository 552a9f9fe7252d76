"""Runtime of a run: device, seeding and RNG state, torchrun's process group, autocast,
the model inputs' memory format and the number of torch threads."""
from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

from ..errors import FerdataError

__all__ = ["resolve_device", "seed_everything", "rng_state", "set_rng_state", "dist_info", "amp_ctx",
           "input_memory_format", "torch_threads", "set_torch_threads"]


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise FerdataError(f"device {spec!r}: expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FerdataError(f"device {spec!r} requested but CUDA is not available")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def dist_info():
    """(rank, world_size, local_rank) from torchrun's environment; initialises the process group."""
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    if ws <= 1:
        return 0, 1, 0
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), ws, int(os.environ.get("LOCAL_RANK", "0"))


def amp_ctx(amp: str, device: torch.device):
    """A zero-argument context factory for the forward passes (autocast or nothing)."""
    if amp == "none":
        return contextlib.nullcontext
    if device.type != "cuda":
        return (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if amp == "bf16" else contextlib.nullcontext
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return lambda: torch.autocast("cuda", dtype=dtype)


def input_memory_format(model: torch.nn.Module, device: torch.device, asked: bool) -> torch.memory_format:
    """The memory format a run gives ``model`` and its inputs on ``device``.

    ``channels_last`` only when asked (``channels_last = true``) and the model has a 2-D
    convolution to gain from it; otherwise contiguous NCHW, on CPU and CUDA alike (on
    CPU a channels_last input is slower for most models here, e.g. 24 % for
    ``feratt_cls``). ``device`` is part of the signature so a per-device default can
    change in one place.
    """
    del device
    has_conv = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    return torch.channels_last if (asked and has_conv) else torch.contiguous_format


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def torch_threads(num_workers: int, device: torch.device, cores: int | None = None) -> int | None:
    """Intra-op threads for the training process, or None to leave torch's setting alone.

    On CPU the model's threads and the DataLoader's worker processes share the cores:
    ``max(1, cores - num_workers)`` threads, so that a busy worker never pre-empts one of
    torch's spinning threads (a parallel region waits for its slowest thread: measured
    swings up to 4× on a busy 2-core machine). ``OMP_NUM_THREADS`` set by the user wins
    (None); so does a CUDA device (the CPU only feeds it).
    """
    if device.type != "cpu" or os.environ.get("OMP_NUM_THREADS"):
        return None
    cores = _cores() if cores is None else int(cores)
    return max(1, cores - max(0, int(num_workers)))


def set_torch_threads(num_workers: int, device: torch.device) -> int:
    """Apply :func:`torch_threads`; returns the intra-op thread count now in effect."""
    n = torch_threads(num_workers, device)
    if n is not None and n != torch.get_num_threads():
        torch.set_num_threads(n)
    return torch.get_num_threads()
