"""ShardIterableDataset (docs/torch.md): every sample once per epoch over DDP ranks x DataLoader
workers, order a function of (seed, epoch), resume mid-epoch. Fixtures: conftest.py."""
import json
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import ferdata.torch.iterable as tds
from ferdata.errors import FerdataError
from ferdata.torch import ShardDataset, ShardIterableDataset
from fixtures.torch_renders import N, _indices  # the renders fixture: conftest.py


class _FakeWorker:
    """Patch get_worker_info to run one DataLoader worker's share in this process."""

    def __init__(self, monkeypatch, workers, worker):
        info = SimpleNamespace(num_workers=workers, id=worker, seed=0, dataset=None)
        monkeypatch.setattr(tds, "get_worker_info", lambda: info)


# ---------------------------------------------------------------------------------------------
# epoch coverage: world sizes 1-4 x workers 0-3, per-sample and batch mode, pad and drop
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [None, 8])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.filterwarnings("ignore:ShardIterableDataset. epoch .* without set_epoch:UserWarning")  # replays on purpose
def test_every_sample_once_per_epoch(renders, monkeypatch, world, drop_last, batch):
    seen_per_rank = []
    for rank in range(world):
        ds = ShardIterableDataset(renders.raw, fields=("index", "label"), seed=3, block=4, buffer=12,
                                  batch_size=batch, drop_last=drop_last, rank=rank, world_size=world)
        ds.set_epoch(2)
        expect_rank = ds.epoch_order()
        for workers in (0, 1, 2, 3):
            got, sizes = [], []
            for w in range(max(workers, 1)):
                if workers:
                    _FakeWorker(monkeypatch, workers, w)
                else:
                    monkeypatch.setattr(tds, "get_worker_info", lambda: None)
                part = [int(i) for item in ds for i in item["index"].reshape(-1)]
                got += part
                sizes.append(len(part))
            # a rank reads its slice of the stream, whatever the number of workers
            assert sorted(got) == sorted(expect_rank.tolist())
            if batch is None:
                assert max(sizes) - min(sizes) <= 1  # equal work per worker (one sample at most)
            else:
                assert max(sizes) - min(sizes) <= batch
        seen_per_rank.append(expect_rank)
    counts = {len(s) for s in seen_per_rank}
    assert len(counts) == 1  # every rank gets the same number of samples
    allseen = Counter(np.concatenate(seen_per_rank).tolist())
    n = counts.pop()
    if drop_last:
        assert max(allseen.values()) == 1 and len(allseen) == world * n
        assert n == (N // world if batch is None else (N // world) // batch * batch)
    else:
        assert n == -(-N // world) and set(allseen) == set(range(N))
        dup = sum(c - 1 for c in allseen.values())
        assert dup == world * n - N  # padding only: none when N is divisible by W
        if N % world == 0:
            assert max(allseen.values()) == 1


def test_real_dataloader_fork_workers_cover_epoch(renders):
    ds = ShardIterableDataset(renders.raw, fields=("index",), block=4, buffer=12, rank=1, world_size=2)
    ds.set_epoch(1)
    for workers in (0, 2):
        dl = DataLoader(ds, batch_size=5, num_workers=workers, multiprocessing_context="fork" if workers else None)
        got = np.concatenate([b["index"].numpy() for b in dl])
        assert sorted(got.tolist()) == sorted(ds.epoch_order().tolist())
        assert len(got) == N // 2


def test_order_is_a_function_of_seed_and_epoch(renders):
    a = ShardIterableDataset(renders.raw, fields=("index",), seed=7, block=4, buffer=8)
    b = ShardIterableDataset(renders.raw, fields=("index",), seed=7, block=4, buffer=8)
    a.set_epoch(0)
    e0 = _indices(a)
    a.set_epoch(1)
    e1 = _indices(a)
    assert e0 != e1 and sorted(e0) == sorted(e1) == list(range(N))
    b.set_epoch(1)
    assert _indices(b) == e1
    b.set_epoch(0)
    assert _indices(b) == e0 == a.epoch_order(0).tolist()
    c = ShardIterableDataset(renders.raw, fields=("index",), seed=8, block=4, buffer=8)
    assert _indices(c) != e0
    d = ShardIterableDataset(renders.raw, fields=("index",), shuffle=False)
    assert _indices(d) == list(range(N))
    # blocks are read whole: with no buffer, runs of `block` consecutive samples survive
    e = ShardIterableDataset(renders.raw, fields=("index",), block=4, buffer=0)
    order = np.array(_indices(e)).reshape(-1, 4)
    assert (np.diff(order, axis=1) == 1).all()


def test_batch_mode_order_does_not_depend_on_workers(renders):
    ds = ShardIterableDataset(renders.jpeg, fields=("index", "image"), block=4, buffer=16, batch_size=8)
    ds.set_epoch(4)
    ref = ds.epoch_order()
    for workers in (0, 2):
        dl = DataLoader(ds, batch_size=None, num_workers=workers)
        batches = list(dl)
        assert np.array_equal(np.concatenate([b["index"].numpy() for b in batches]), ref)
        assert batches[0]["image"].shape == (8, 3, 128, 128) and batches[0]["image"].dtype == torch.uint8
    assert len(ds) == N // 8


@pytest.mark.slow
def test_spawn_persistent_workers_follow_set_epoch(renders):
    ds = ShardIterableDataset(renders.jpeg, fields=("image", "label", "index"), block=4, buffer=8, batch_size=10)
    ref = ShardDataset(renders.jpeg, fields=("image",))
    dl = DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="spawn", persistent_workers=True)
    orders = []
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        batches = list(dl)
        idx = np.concatenate([b["index"].numpy() for b in batches])
        assert np.array_equal(idx, ds.epoch_order(epoch))
        orders.append(idx)
        b = batches[1]
        want = torch.stack([ref[int(i)]["image"] for i in b["index"]])
        assert torch.equal(b["image"], want)
    assert not np.array_equal(orders[0], orders[1])


@pytest.mark.slow
def test_map_style_dataloader_spawn_and_getitems(renders):
    ds = ShardDataset(renders.raw, fields=("image", "label", "index"))
    dl = DataLoader(ds, batch_size=16, shuffle=True, num_workers=2, multiprocessing_context="spawn")
    got = np.concatenate([b["index"].numpy() for b in dl])
    assert sorted(got.tolist()) == list(range(N))
    items = ds.__getitems__([5, 3, 5, -1])
    for i, it in zip([5, 3, 5, N - 1], items):
        one = ds[i]
        assert all(torch.equal(one[k], it[k]) for k in one)
    with pytest.raises(IndexError):
        ds[N]


# ---------------------------------------------------------------------------------------------
# resume
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [None, 8])
def test_resume_in_process(renders, batch):
    kw = dict(fields=("index",), seed=1, block=4, buffer=8, batch_size=batch, rank=0, world_size=2)
    ds = ShardIterableDataset(renders.raw, **kw)
    ds.set_epoch(3)
    full = ds.epoch_order().tolist()
    it = iter(DataLoader(ds, batch_size=None if batch else 4))
    first = [int(i) for _ in range(3) for i in next(it)["index"]]
    state = json.loads(json.dumps(ds.state_dict()))  # JSON-able
    assert state["epoch"] == 3 and state["samples_consumed"] == (24 if batch else 12)
    ds2 = ShardIterableDataset(renders.raw, **kw)
    ds2.load_state_dict(state)
    rest = [int(i) for b in DataLoader(ds2, batch_size=None if batch else 4) for i in b["index"]]
    assert first + rest == full  # exactly the remaining samples, in order
    # the resumed epoch is done: the next one is whole again, and a re-run of it as well
    ds2.set_epoch(4)
    assert sorted(i for b in DataLoader(ds2, batch_size=None if batch else 4) for i in b["index"].tolist()) \
        == sorted(ds2.epoch_order().tolist())


@pytest.mark.parametrize("batch", [None, 8])
def test_resume_with_dataloader_workers(renders, batch):
    kw = dict(fields=("index",), seed=2, block=4, buffer=8, batch_size=batch)
    ds = ShardIterableDataset(renders.raw, **kw)
    ds.set_epoch(5)
    dl = DataLoader(ds, batch_size=None if batch else 6, num_workers=2, multiprocessing_context="fork")
    it = iter(dl)
    taken = [next(it)["index"] for _ in range(5)]
    del it
    seen = sum(len(t) for t in taken)
    state = ds.state_dict(samples_seen=seen, loader=dl)
    assert state["samples_consumed"] == seen
    ds2 = ShardIterableDataset(renders.raw, **kw)
    ds2.load_state_dict(state)
    for workers in (0, 1):  # resuming with another number of workers is fine
        ds2.load_state_dict(state)
        rest = [int(i) for b in DataLoader(ds2, batch_size=None if batch else 6, num_workers=workers)
                for i in b["index"]]
        first = [int(i) for t in taken for i in t]
        assert sorted(first + rest) == list(range(N)) and not set(first) & set(rest)
        if batch:
            assert first + rest == ds.epoch_order().tolist()


def test_resume_state_checks(renders):
    ds = ShardIterableDataset(renders.raw, fields=("index",), seed=1)
    state = ds.state_dict()
    with pytest.raises(FerdataError, match="seed"):
        ShardIterableDataset(renders.raw, fields=("index",), seed=2).load_state_dict(state)
    with pytest.raises(FerdataError, match="rank"):
        ShardIterableDataset(renders.raw, fields=("index",), seed=1).load_state_dict({**state, "rank": 3})
    with pytest.raises(FerdataError, match="state"):
        ds.load_state_dict({"epoch": 0})
    with pytest.raises(FerdataError, match="batch_size"):
        ds.state_dict(samples_seen=4, num_workers=2)
    with pytest.raises(ValueError, match="samples_seen"):
        ds.state_dict(samples_seen=3, num_workers=2, batch_size=4)


def test_rank_from_torch_distributed(renders, tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        ds = ShardIterableDataset(renders.raw, fields=("index",))
        assert (ds.rank, ds.world_size) == (0, 1)
    finally:
        dist.destroy_process_group()
    with pytest.raises(FerdataError, match="rank"):
        ShardIterableDataset(renders.raw, fields=("index",), rank=2, world_size=2)


def test_built_from_select_and_decode_specs_like_the_keywords(renders):
    from ferdata.torch import Decode, Select

    kw = ShardIterableDataset(renders.raw, fields=("index", "label"), face_indices=[1], resize=16, seed=3, block=4)
    sp = ShardIterableDataset(renders.raw, select=Select(face_indices=[1]),
                              decode=Decode(fields=("index", "label"), resize=16), seed=3, block=4)
    assert np.array_equal(kw.epoch_order(0), sp.epoch_order(0)) and sp.decode_spec.resize == 16
    with pytest.raises(TypeError, match="inside select="):
        ShardIterableDataset(renders.raw, select=Select(split="train"), face_indices=[1])
    with pytest.raises(TypeError, match="unexpected keyword argument 'fiels'"):
        ShardIterableDataset(renders.raw, fiels=("image",))
