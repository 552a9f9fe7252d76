"""ferdata.torch: shard / face-store datasets, epoch order, DDP x worker splits, resume, GPU transforms."""
import json
import shutil
import threading
from collections import Counter
from types import SimpleNamespace

import cv2
import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import ferdata.torch.iterable as tds
from ferdata.config import RenderConfig
from ferdata.errors import FerdataError, ShardError
from ferdata.facestore import FaceStore, FaceStoreWriter
from ferdata.labels import CLASSES, MIRROR68
from ferdata.render.run import RenderJob, get_context, render
from ferdata.shards.manifest import rewrite_shard_entry
from ferdata.shards.reader import read_images
from ferdata.shards.schema import decode_jpeg, encode_jpeg, unpack_masks
from ferdata.torch import FaceStoreDataset, ShardDataset, ShardIterableDataset
from ferdata.torch import transforms as T

N = 80  # 2 faces x 40 renders, 5 shards of 16


def _render(sample_dir, out, **kw):
    cfg = RenderConfig(per_face=40, shard_size=16, **kw)
    render(sample_dir / "faces.h5", sample_dir / "backgrounds", out, cfg, workers=1)
    return RenderJob(str((sample_dir / "faces.h5").resolve()), str((sample_dir / "backgrounds").resolve()),
                     str(out.resolve()), cfg.validate().resolved())


@pytest.fixture(scope="module")
def renders(sample_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("torch_renders")
    raw = _render(sample_dir, d / "raw64", size=64, encoding="raw")
    jpg = _render(sample_dir, d / "jpeg128", size=128, encoding="jpeg")
    return SimpleNamespace(raw=d / "raw64", jpeg=d / "jpeg128", raw_job=raw, jpeg_job=jpg, root=d)


@pytest.fixture(scope="module")
def split_render(sample_dir, tmp_path_factory):
    """A face store with official splits (face 0: train, face 1: test) and a render of it."""
    d = tmp_path_factory.mktemp("torch_split")
    with FaceStore(sample_dir / "faces.h5") as fs, FaceStoreWriter(d / "faces.h5", fs.size, "sample") as w:
        for i, split in enumerate(("train", "test")):
            w.append(fs.images[i], fs.masks[i], fs.landmarks[i], fs.labels[i], fs.subjects[i], fs.sources[i], split)
    cfg = RenderConfig(size=32, per_face=8, shard_size=8, encoding="raw")
    render(d / "faces.h5", sample_dir / "backgrounds", d / "shards", cfg, workers=1)
    return d


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _indices(ds):
    return [int(s["index"]) for s in ds]


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


# ---------------------------------------------------------------------------------------------
# content: what the writer wrote
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["raw", "jpeg"])
def test_samples_equal_the_render(renders, which):
    path, job = (renders.raw, renders.raw_job) if which == "raw" else (renders.jpeg, renders.jpeg_job)
    ds = ShardDataset(path, fields=("image", "label", "landmarks", "mask", "subject", "params", "face_index",
                                    "background", "bg_box", "index"))
    ctx = get_context(job)
    size = job.cfg.size
    for g in (0, 17, 46, N - 1):
        s = ds[g]
        want = ctx.render_sample(g)
        img = s["image"].permute(1, 2, 0).numpy()
        assert s["image"].shape == (3, size, size) and s["image"].dtype == torch.uint8
        diff = np.abs(img.astype(int) - want["image"].astype(int))
        if which == "raw":
            assert diff.max() == 0
        else:  # JPEG q95 of a noisy render: close to it, and exactly the writer's encoding decoded
            assert 10 * np.log10(255 ** 2 / (diff.astype(float) ** 2).mean()) > 28  # PSNR, dB
            assert np.array_equal(img, decode_jpeg(encode_jpeg(want["image"], job.cfg.jpeg_quality)))
        assert s["label"].dtype == torch.int64 and int(s["label"]) == want["label"]
        assert int(s["subject"]) == want["subject"] and int(s["face_index"]) == want["face_index"]
        assert int(s["background"]) == want["background"] and int(s["index"]) == g
        assert np.allclose(s["landmarks"].numpy(), want["landmarks"], atol=0.05)
        assert np.array_equal(s["mask"][0].numpy() > 0, want["mask"] > 0)
        assert s["params"].shape == (len(ds.param_names),)
    # and what the reader of the shards module returns, for a whole shard
    with h5py.File(path / "shard-000002.h5", "r") as f:
        imgs = read_images(f, 0, 16)
        masks = unpack_masks(f["mask"][:], size)
    batch = ds.__getitems__(range(32, 48))
    got = np.stack([b["image"].permute(1, 2, 0).numpy() for b in batch])
    assert np.array_equal(got, imgs)  # same decoder (cv2) for JPEG: identical
    assert np.array_equal(np.stack([b["mask"][0].numpy() for b in batch]), masks)


def test_iterable_equals_map_style(renders):
    m = ShardDataset(renders.jpeg, fields=("image", "landmarks", "label", "index"))
    it = ShardIterableDataset(renders.jpeg, fields=("image", "landmarks", "label", "index"), block=4, buffer=8)
    for s in it:
        r = m[int(s["index"])]
        assert all(torch.equal(s[k], r[k]) for k in r)


def test_resize_gray_and_labels(renders, sample_dir):
    base = ShardDataset(renders.raw, fields=("image", "landmarks", "mask"))
    ds = ShardDataset(renders.raw, fields=("image", "landmarks", "mask", "label"), resize=(48, 32), gray=True,
                      label_map="present")
    assert ds.image_shape == (1, 48, 32)
    s, b = ds[9], base[9]
    assert s["image"].shape == (1, 48, 32) and s["mask"].shape == (1, 48, 32)
    g = cv2.cvtColor(b["image"].permute(1, 2, 0).numpy(), cv2.COLOR_RGB2GRAY)
    assert np.array_equal(s["image"][0].numpy(), cv2.resize(g, (32, 48), interpolation=cv2.INTER_AREA))
    lm = b["landmarks"].numpy()
    assert np.allclose(s["landmarks"].numpy(), (lm + 0.5) * [32 / 64, 48 / 64] - 0.5, atol=1e-4)
    # labels: canonical by default, 0..len(classes)-1 with label_map="present"
    canon = ShardDataset(renders.raw, fields=("label",))
    assert ds.classes == canon.classes == ["neutral", "happiness"]
    assert canon.num_classes == len(CLASSES) and ds.num_classes == 2 and ds.label_names == ds.classes
    for i in range(4):
        assert ds.classes[int(ds[i]["label"])] == CLASSES[int(canon[i]["label"])]
    custom = ShardDataset(renders.raw, fields=("label",), label_map={"happiness": 0, "neutral": 1})
    assert [int(custom[i]["label"]) for i in range(2)] == [1 - int(canon[i]["label"]) for i in range(2)]
    # JPEG: gray decode and reduced (DCT-scaled) decode stay close to full decode + cv2
    full = ShardDataset(renders.jpeg, fields=("image",))
    small = ShardDataset(renders.jpeg, fields=("image",), resize=32, gray=True)
    for i in (0, 5):
        g = cv2.cvtColor(full[i]["image"].permute(1, 2, 0).numpy(), cv2.COLOR_RGB2GRAY)
        want = cv2.resize(g, (32, 32), interpolation=cv2.INTER_AREA).astype(int)
        assert np.abs(small[i]["image"][0].numpy().astype(int) - want).mean() < 3
    exact = ShardDataset(renders.jpeg, fields=("image",), resize=32, reduced_decode=False)
    want = cv2.resize(full[3]["image"].permute(1, 2, 0).numpy(), (32, 32), interpolation=cv2.INTER_AREA)
    assert np.array_equal(exact[3]["image"].permute(1, 2, 0).numpy(), want)


def test_subject_face_and_split_filters(renders, split_render):
    all_ = ShardDataset(renders.raw, fields=("subject", "face_index", "index"))
    astro = ShardDataset(renders.raw, fields=("subject", "face_index", "index"), subjects=["astronaut"])
    assert len(astro) == N // 2 and all_.subjects == astro.subjects == ["astronaut", "grace_hopper"]
    assert {int(s["subject"]) for s in astro} == {0}
    by_face = ShardIterableDataset(renders.raw, fields=("face_index", "index"), face_indices=np.array([1]),
                                   block=4, buffer=8)
    got = [(int(s["face_index"]), int(s["index"])) for s in by_face]
    assert {f for f, _ in got} == {1} and sorted(i for _, i in got) == list(range(1, N, 2))
    # split: through the face store the render was made from (manifest path, or faces=)
    tr = ShardDataset(split_render / "shards", fields=("face_index",), split="train")
    te = ShardDataset(split_render / "shards", fields=("face_index",), split=["test"],
                      faces=split_render / "faces.h5")
    assert len(tr) == len(te) == 8
    assert {int(s["face_index"]) for s in tr} == {0} and {int(s["face_index"]) for s in te} == {1}
    with pytest.raises(FerdataError, match="not in this render"):
        ShardDataset(renders.raw, subjects=["nobody"])
    with pytest.raises(FerdataError, match="no sample matches"):
        ShardDataset(split_render / "shards", split="val")
    with pytest.raises(FerdataError, match="face store"):
        ShardDataset(renders.raw, split="train", faces=renders.root / "missing.h5")
    with pytest.raises(FerdataError, match="face_indices"):
        ShardDataset(renders.raw, face_indices=[5])


def test_stored_lbp_field(renders, tmp_path):
    folder = _copy(renders.raw, tmp_path / "lbp")
    written = {}
    for p in sorted(folder.glob("shard-*.h5")):
        with h5py.File(p, "a") as f:
            codes = (read_images(f, 0, len(f["label"]))[..., 1] // 7).astype(np.uint8)
            f.create_dataset("lbp/circle_P8_R1", data=codes)
            written[p.name] = codes
        rewrite_shard_entry(folder, p.name)
    ds = ShardDataset(folder, fields=("image", "lbp/circle_P8_R1"))
    s = ds[20]
    assert s["lbp/circle_P8_R1"].shape == (1, 64, 64) and s["lbp/circle_P8_R1"].dtype == torch.uint8
    assert np.array_equal(s["lbp/circle_P8_R1"][0].numpy(), written["shard-000001.h5"][4])
    small = ShardDataset(folder, fields=("lbp/circle_P8_R1",), resize=32)  # nearest: codes stay codes
    assert set(np.unique(small[20]["lbp/circle_P8_R1"].numpy())) <= set(np.unique(written["shard-000001.h5"][4]))


def test_on_the_fly_lbp(renders, tmp_path):
    try:
        from ferdata.features import add_lbp_to_shards
        from ferdata.features.lbp import lbp
    except Exception as exc:  # the features package is built by another change
        pytest.skip(f"ferdata.features (lbp) not importable here: {exc}")
    # codes added by `ferdata lbp` == codes computed on the fly from the same gray image
    folder = _copy(renders.raw, tmp_path / "lbp")
    add_lbp_to_shards(folder, "circle", 8, 1.0)
    both = ShardDataset(folder, fields=("lbp/circle_P8_R1", "lbp:circle_P8_R1"))
    for i in (0, 33, N - 1):
        s = both[i]
        assert torch.equal(s["lbp/circle_P8_R1"], s["lbp:circle_P8_R1"])
    ds = ShardIterableDataset(renders.jpeg, fields=("image", "lbp:circle_P8_R1", "lbp:original"), gray=True,
                              resize=64, block=4, buffer=8, batch_size=16)
    b = next(iter(ds))
    g = b["image"][:, 0].numpy()
    assert torch.equal(b["lbp:circle_P8_R1"][:, 0], torch.from_numpy(lbp(g, "circle", 8, 1.0)))
    assert torch.equal(b["lbp:original"][:, 0], torch.from_numpy(lbp(g, "original")))
    wide = ShardDataset(renders.raw, fields=("lbp:uniform_P16_R2", "lbp:circle_P16_R2"))
    s = wide[0]
    assert s["lbp:uniform_P16_R2"].dtype == torch.uint8 and int(s["lbp:uniform_P16_R2"].max()) <= 17
    assert s["lbp:circle_P16_R2"].dtype == torch.int32
    # DataLoader workers: spawn works after this process ran the (OpenMP) kernels; a forked
    # worker would be killed by GNU OpenMP, so it raises a clear error instead
    mk = lambda ctx: DataLoader(ShardDataset(renders.raw, fields=("lbp:uniform",)), batch_size=40,  # noqa: E731
                                num_workers=1, multiprocessing_context=ctx)
    assert sum(len(x["lbp:uniform"]) for x in mk("spawn")) == N
    import numba

    if numba.threading_layer() == "omp":
        with pytest.raises(FerdataError, match="spawn"):
            list(mk("fork"))


def test_threads_get_their_own_handles(renders):
    ds = ShardDataset(renders.jpeg, fields=("image", "index"))
    want = {i: ds[i]["image"] for i in range(0, N, 5)}
    errors = []

    def work():
        try:
            for _ in range(3):
                for i, img in want.items():
                    assert torch.equal(ds[i]["image"], img)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# ---------------------------------------------------------------------------------------------
# face store
# ---------------------------------------------------------------------------------------------
def test_face_store_dataset(sample_dir, split_render):
    path = sample_dir / "faces.h5"
    ds = FaceStoreDataset(path, fields=("image", "label", "subject", "landmarks", "mask", "index"))
    with FaceStore(path) as fs:
        assert len(ds) == len(fs) and ds.classes == fs.classes
        for i in range(len(fs)):
            s = ds[i]
            assert np.array_equal(s["image"].permute(1, 2, 0).numpy(), fs.images[i])
            assert np.array_equal(s["mask"][0].numpy(), fs.masks[i])
            assert np.allclose(s["landmarks"].numpy(), fs.landmarks[i], equal_nan=True)
            assert int(s["label"]) == fs.labels[i] and ds.subjects[int(s["subject"])] == fs.subjects[i]
    small = FaceStoreDataset(path, fields=("image", "label"), resize=32, gray=True, label_map="present",
                             subjects=["grace_hopper"])
    assert len(small) == 1 and small[0]["image"].shape == (1, 32, 32)
    assert small.classes[int(small[0]["label"])] == "neutral" and small.labels.tolist() == [0]
    test = FaceStoreDataset(split_render / "faces.h5", fields=("index",), split="test")
    assert [int(s["index"]) for s in test] == [1]
    assert FaceStoreDataset(path, face_indices=[1]).face_indices.tolist() == [1]
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 3, 256, 256) and batch["label"].dtype == torch.int64
    with pytest.raises(FerdataError, match="subject"):
        FaceStoreDataset(path, subjects=["nobody"])
    with pytest.raises(FerdataError, match="votes"):
        FaceStoreDataset(path, fields=("votes",))


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
def test_errors_name_the_file(renders, tmp_path):
    with pytest.raises(ShardError, match="no dataset 'lbp/circle_P8_R1'.*ferdata lbp"):
        ShardDataset(renders.raw, fields=("image", "lbp/circle_P8_R1"))
    with pytest.raises(FerdataError, match="unknown field 'pixels'"):
        ShardDataset(renders.raw, fields=("pixels",))
    with pytest.raises(FerdataError, match="lbp:"):
        ShardDataset(renders.raw, fields=("lbp:fancy_P8_R1",))
    with pytest.raises(FerdataError, match="resize"):
        ShardDataset(renders.raw, resize=(0, 4))
    with pytest.raises(FerdataError, match="label_map"):
        ShardDataset(renders.raw, label_map="alphabetical")
    with pytest.raises(ShardError, match="manifest"):
        ShardDataset(tmp_path)
    # size differs from the manifest: refused on open, naming the shard
    trunc = _copy(renders.raw, tmp_path / "trunc")
    with open(trunc / "shard-000003.h5", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ShardError, match="shard-000003.h5.*does not match manifest"):
        ShardIterableDataset(trunc)
    # same size, different bytes: only verify=True (sha256) notices
    bad = _copy(renders.raw, tmp_path / "bad")
    p = bad / "shard-000001.h5"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    ShardDataset(bad)
    with pytest.raises(ShardError, match="shard-000001.h5.*sha256"):
        ShardDataset(bad, verify=True)
    # unknown schema version: refused when the shard is opened
    newer = _copy(renders.raw, tmp_path / "newer")
    with h5py.File(newer / "shard-000004.h5", "a") as f:
        f.attrs["schema_version"] = 99
    rewrite_shard_entry(newer, "shard-000004.h5")
    ds = ShardDataset(newer, fields=("image",))
    ds[0]
    with pytest.raises(ShardError, match="shard-000004.h5.*schema_version 99"):
        ds[N - 1]
    # a listed shard that is gone; an interrupted render
    gone = _copy(renders.raw, tmp_path / "gone")
    (gone / "shard-000002.h5").unlink()
    with pytest.raises(ShardError, match="shard-000002.h5.*missing"):
        ShardDataset(gone)
    part = _copy(renders.raw, tmp_path / "part")
    m = json.loads((part / "manifest.json").read_text())
    del m["shards"]["shard-000004.h5"]
    (part / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ShardError, match="incomplete render"):
        ShardDataset(part)
    assert len(ShardDataset(part, allow_partial=True)) == N - 16
    with pytest.raises(FerdataError, match="block"):
        ShardIterableDataset(renders.raw, block=0)


# ---------------------------------------------------------------------------------------------
# GPU-side transforms (run on CPU here)
# ---------------------------------------------------------------------------------------------
def test_transforms_float_normalize_flip():
    x = torch.randint(0, 256, (4, 3, 8, 6), dtype=torch.uint8)
    f = T.to_float(x)
    assert f.dtype == torch.float32 and torch.allclose(f * 255, x.float())
    n = T.normalize(x, mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.5])
    assert torch.allclose(n[:, 1], (f[:, 1] - 0.4) / 0.2)
    assert torch.equal(T.random_flip(x, p=1.0), x.flip(-1)) and torch.equal(T.random_flip(x, p=0.0), x)
    g = torch.Generator().manual_seed(0)
    out, mask = T.random_flip(x, p=0.5, generator=g, return_mask=True)
    assert all(torch.equal(out[i], x[i].flip(-1) if mask[i] else x[i]) for i in range(4))
    same = T.random_affine(x.float(), size=None)
    assert torch.allclose(same, x.float(), atol=1e-3)
    crop = T.random_affine(x, scale=(1.5, 2.0), translate=0.1, size=(4, 4), generator=g)
    assert crop.shape == (4, 3, 4, 4) and crop.dtype == torch.float32


def test_gpu_augment_keeps_fields_consistent(renders):
    ds = ShardDataset(renders.raw, fields=("image", "mask", "landmarks", "label"))
    batch = torch.utils.data.default_collate([ds[i] for i in range(6)])
    aug = T.GpuAugment(flip=1.0, mean=0.5, std=0.25)
    out = aug(batch)
    img = batch["image"]
    assert torch.allclose(out["image"], (img.flip(-1).float() / 255 - 0.5) / 0.25, atol=1e-5)
    assert torch.equal(out["mask"], (batch["mask"].flip(-1) > 0).float())
    lm = batch["landmarks"]
    mirrored = torch.stack((63 - lm[..., 0], lm[..., 1]), -1)[:, list(MIRROR68)]
    assert torch.allclose(out["landmarks"], mirrored, atol=1e-3)
    assert torch.equal(out["label"], batch["label"])
    aug.eval()
    plain = aug(batch)
    assert torch.allclose(plain["image"], (img.float() / 255 - 0.5) / 0.25)
    jitter = T.GpuAugment(flip=0.5, scale=(1.0, 1.3), translate=0.1, size=(32, 32))
    jit = jitter(batch, torch.Generator().manual_seed(1))
    assert jit["image"].shape == (6, 3, 32, 32) and jit["mask"].shape == (6, 1, 32, 32)
    assert jit["landmarks"].shape == (6, 68, 2)


def test_gpu_augment_moves_image_mask_and_landmarks_together():
    """A bright dot at landmark 30 (the nose tip: its own mirror) and a mask square around it
    stay together through random flips, scales and shifts: image, mask and landmark agree."""
    n, S = 16, 64
    rng = np.random.default_rng(0)
    img = torch.zeros(n, 3, S, S, dtype=torch.uint8)
    mask = torch.zeros(n, S, S, dtype=torch.uint8)
    lm = torch.zeros(n, 68, 2)
    for i in range(n):
        x, y = (int(v) for v in rng.integers(20, 44, 2))
        img[i, :, y - 1:y + 2, x - 1:x + 2] = 255
        mask[i, y - 4:y + 5, x - 4:x + 5] = 255
        lm[i, 30] = torch.tensor([x, y], dtype=torch.float32)
    batch = {"image": img, "mask": mask[:, None], "landmarks": lm, "label": torch.zeros(n, dtype=torch.long)}
    aug = T.GpuAugment(flip=0.5, scale=(0.8, 1.25), translate=0.1, size=(48, 48))
    out = aug(batch, torch.Generator().manual_seed(3))
    flat = out["image"][:, 0].reshape(n, -1)
    peak = flat.argmax(1)
    py, px = peak // 48, peak % 48
    d = torch.hypot(out["landmarks"][:, 30, 0] - px, out["landmarks"][:, 30, 1] - py)
    assert d.max() <= 1.5, d
    assert all(out["mask"][i, 0, py[i], px[i]] > 0.5 for i in range(n))      # the dot lies in the mask
    assert out["mask"].sum() > 0 and not torch.equal(out["image"], out["image"].flip(0))


def test_mirror_lbp_lut_matches_lbp_of_flipped_image(renders):
    from ferdata.features.lbp import lbp

    g = ShardDataset(renders.raw, fields=("image",), gray=True)[3]["image"][0].numpy()
    for variant, P, R in (("original", 8, 1), ("uniform", 8, 1), ("circle", 8, 2), ("ror", 8, 1)):
        codes = torch.from_numpy(lbp(g, variant, P, R).astype(np.int64))
        flipped = torch.from_numpy(lbp(np.ascontiguousarray(g[:, ::-1]), variant, P, R).astype(np.int64))
        remapped = T.mirror_lbp_lut(variant, P)[codes.flip(-1)]
        agree = (remapped == flipped).float().mean()
        assert agree == 1.0 if variant in ("original", "uniform") else agree > 0.99
    with pytest.raises(ValueError):
        T.mirror_lbp_lut("nri_uniform", 8)


def test_split_face_store_is_checked_by_content(split_render, tmp_path):
    """split= finds its face store by content: another store with as many faces is refused."""
    other = tmp_path / "other.h5"
    with FaceStore(split_render / "faces.h5") as fs, FaceStoreWriter(other, fs.size, "sample") as w:
        for i, split in enumerate(("train", "test")):   # same count, same splits, other labels
            w.append(fs.images[i], fs.masks[i], fs.landmarks[i], fs.labels[1 - i], fs.subjects[i], fs.sources[i],
                     split)
    with pytest.raises(FerdataError, match="content differs"):
        ShardDataset(split_render / "shards", split="train", faces=other)
    moved = tmp_path / "moved.h5"
    shutil.copy(split_render / "faces.h5", moved)         # the same content elsewhere is accepted
    assert len(ShardDataset(split_render / "shards", split="train", faces=moved)) == 8
