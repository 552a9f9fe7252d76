"""The DataLoader on CPU (issue 23.5): ``ferdata train`` defaults to no worker processes on a
CPU device (the decode threads use the cores), and that path yields the same batches, in
the same order, with the same bytes as worker processes and as one decode thread."""
import hashlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ferdata.torch import ShardDataset, ShardIterableDataset
from ferdata.train.config import TrainConfig
from ferdata.train.data import CUDA_WORKERS, _loader, train_loader_workers

CPU = torch.device("cpu")


def test_automatic_workers_are_zero_on_cpu_only():
    assert train_loader_workers(None, CPU) == 0
    assert train_loader_workers(None, "cpu") == 0
    assert train_loader_workers(None, torch.device("cuda")) == CUDA_WORKERS == 2
    assert train_loader_workers(None, "cuda:1") == 2
    assert train_loader_workers(3, CPU) == 3 and train_loader_workers(0, "cuda") == 0  # asked for: kept


def test_train_loader_on_cpu_uses_the_decode_threads(renders):
    ds = ShardIterableDataset(renders.jpeg, fields=("image", "label"), batch_size=16)
    dl = _loader(ds, SimpleNamespace(num_workers=None), 16, batched=True, device=CPU)
    assert dl.num_workers == 0 and not dl.pin_memory and not dl.persistent_workers and dl.batch_size is None
    assert ds._pipe.threads() >= 1  # automatic: every core (up to 8) in the training process
    dl2 = _loader(ds, SimpleNamespace(num_workers=2), 16, batched=True, device=CPU)
    assert dl2.num_workers == 2 and dl2.persistent_workers


def test_train_default_on_cpu_is_the_fast_path():
    assert TrainConfig().num_workers is None
    assert train_loader_workers(TrainConfig().num_workers, CPU) == 0


def _digest(batches) -> tuple:
    h = hashlib.sha256()
    idx = []
    for b in batches:
        h.update(b["image"].contiguous().numpy().tobytes())
        h.update(b["label"].numpy().tobytes())
        idx.append(b["index"].numpy())
    return h.hexdigest(), np.concatenate(idx)


@pytest.mark.parametrize("epoch", [0, 3])
def test_threads_path_gives_the_worker_path_batches(renders, epoch):
    """Same seed and epoch: the default CPU path (no workers, automatic decode threads), one
    decode thread, and 2 forked workers (the old default) give identical batches; the
    images are those ShardDataset reads for the same indices."""
    def run(workers, threads=None):
        ds = ShardIterableDataset(renders.jpeg, fields=("image", "label", "index"), seed=11, batch_size=24)
        ds.decode_threads = threads
        ds.set_epoch(epoch)
        dl = DataLoader(ds, batch_size=None, num_workers=workers,
                        multiprocessing_context="fork" if workers else None)
        return _digest(list(dl)), ds.epoch_order(epoch)

    (fast, idx), order = run(0)
    (one, idx1), _ = run(0, threads=1)
    (workers, idx2), _ = run(2)
    assert fast == one == workers
    assert np.array_equal(idx, order) and np.array_equal(idx1, order) and np.array_equal(idx2, order)
    ref = ShardDataset(renders.jpeg, fields=("image", "label", "index"))
    pick = np.random.default_rng(epoch).choice(idx.size, 20, replace=False)
    ds = ShardIterableDataset(renders.jpeg, fields=("image", "index"), seed=11, batch_size=idx.size)
    ds.set_epoch(epoch)
    batch = next(iter(ds))
    for j in pick.tolist():
        want = ref[int(idx[j])]  # no filter: ShardDataset's i-th sample is the render's sample i
        assert int(want["index"]) == int(batch["index"][j]) and torch.equal(want["image"], batch["image"][j])
