"""Runtime of a run: device, seeding and RNG state, torchrun's process group, autocast."""
from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

from ..errors import FerdataError

__all__ = ["resolve_device", "seed_everything", "rng_state", "set_rng_state", "dist_info", "amp_ctx"]


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
