"""Threaded JPEG decoding in the torch datasets: same bytes, same order; a corrupt JPEG is named."""
import shutil

import h5py
import numpy as np
import pytest
import torch

from ferdata.config import RenderConfig
from ferdata.errors import FerdataError
from ferdata.render.run import render
from ferdata.torch import FaceStoreDataset, ShardDataset, ShardIterableDataset


@pytest.fixture(scope="module")
def jpeg_shards(sample_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("threads") / "jpeg"
    render(sample_dir / "faces.h5", sample_dir / "backgrounds", out,
           RenderConfig(size=96, per_face=150, shard_size=100, encoding="jpeg"), workers=1)
    return out


def test_threads_give_identical_batches(jpeg_shards):
    one, many = ShardDataset(jpeg_shards), ShardDataset(jpeg_shards)
    one.decode_threads, many.decode_threads = 1, 4
    idx = np.random.default_rng(0).permutation(len(one))[:200].tolist()
    a, b = one.__getitems__(idx), many.__getitems__(idx)
    assert all(torch.equal(x["image"], y["image"]) and int(x["label"]) == int(y["label"]) for x, y in zip(a, b))
    for resize in (48, (40, 56)):
        r1 = ShardDataset(jpeg_shards, resize=resize)
        r4 = ShardDataset(jpeg_shards, resize=resize)
        r1.decode_threads, r4.decode_threads = 1, 3
        assert all(torch.equal(x["image"], y["image"]) for x, y in zip(r1.__getitems__(idx[:64]), r4.__getitems__(idx[:64])))


def test_iterable_order_unchanged_by_threads(jpeg_shards):
    def images(threads):
        ds = ShardIterableDataset(jpeg_shards, seed=3, batch_size=32)
        ds.decode_threads = threads
        return torch.cat([b["image"] for b in ds])
    assert torch.equal(images(1), images(4))


def test_corrupt_jpeg_names_shard_and_sample(jpeg_shards, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(jpeg_shards, bad)
    with h5py.File(bad / "shard-000001.h5", "r+") as f:
        off = f["image_offsets"][:]
        blob = f["image"]
        blob[off[17]:off[18]] = np.zeros(off[18] - off[17], np.uint8)
    for threads in (1, 4):
        ds = ShardDataset(bad)
        ds.decode_threads = threads
        with pytest.raises(FerdataError, match=r"shard-000001\.h5 sample 17 \(global sample 117\)"):
            ds.__getitems__(list(range(90, 140)))
        it = ShardIterableDataset(bad, shuffle=False, batch_size=64)
        it.decode_threads = threads
        with pytest.raises(FerdataError, match=r"shard-000001\.h5 sample 17"):
            list(it)


def test_decode_threads_validated(jpeg_shards, sample_dir):
    ds = ShardDataset(jpeg_shards)
    for bad in (0, -2, True):
        with pytest.raises(FerdataError, match="decode_threads"):
            ds.decode_threads = bad
    fs = FaceStoreDataset(sample_dir / "faces.h5")
    fs.decode_threads = 2  # a face store is raw: accepted, nothing to decode
    assert fs[0]["image"].dtype == torch.uint8


def test_mapped_reads_equal_hdf5(jpeg_shards):
    """JPEG bytes and rows read from the memory map are HDF5's, for any set of rows."""
    from ferdata.torch._h5read import FileMap, _read_jpeg, _read_rows, read_jpeg_mapped

    path = str(jpeg_shards / "shard-000001.h5")
    with h5py.File(path, "r") as f:
        fm = FileMap(path)
        ds, off = f["image"], f["image_offsets"][:]
        view = fm.view(ds)
        assert view is not None and fm.view(f["mask"]) is None  # gzip'd chunks: through h5py
        n = off.size - 1
        rng = np.random.default_rng(1)
        for local in (np.arange(n), np.array([0]), np.array([n - 1]), np.unique(rng.integers(0, n, 37)),
                      np.array([0, 1, 2, 7, 30, n - 2, n - 1])):
            got, want = read_jpeg_mapped(view, off, local), _read_jpeg(ds, off, local)
            assert [bytes(x) for x in got] == [bytes(y) for y in want]
            for name in ("landmarks", "params", "bg_box"):
                v = fm.view(f[name])
                assert v is not None and np.array_equal(v[local], _read_rows(f[name], local))
            assert np.array_equal(_read_rows(f["mask"], local), f["mask"][:][local])
        fm.close()


def test_chunked_image_dataset_falls_back_to_hdf5(jpeg_shards, tmp_path):
    """A shard whose datasets are chunked (not one plain block) is read through h5py: same batches."""
    from ferdata.torch._h5read import FileMap

    other = tmp_path / "chunked"
    shutil.copytree(jpeg_shards, other)
    p = other / "shard-000000.h5"
    with h5py.File(jpeg_shards / "shard-000000.h5", "r") as src, h5py.File(p.with_suffix(".tmp"), "w") as dst:
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        for name in src:
            data = src[name][:]
            dst.create_dataset(name, data=data, chunks=(4096,) if name == "image" else (7,) + data.shape[1:])
    p.with_suffix(".tmp").replace(p)
    with h5py.File(p, "r") as f:
        assert FileMap(str(p)).view(f["image"]) is None
    import json
    m = json.loads((other / "manifest.json").read_text())
    m["shards"][p.name]["bytes"] = p.stat().st_size
    (other / "manifest.json").write_text(json.dumps(m))
    fields = ("image", "label", "index", "landmarks", "params", "mask")
    a = ShardIterableDataset(jpeg_shards, seed=5, batch_size=50, fields=fields)
    b = ShardIterableDataset(other, seed=5, batch_size=50, fields=fields)
    for x, y in zip(a, b):
        assert all(torch.equal(x[k], y[k]) for k in x)


def test_truncated_while_reading_is_an_error(jpeg_shards, tmp_path):
    shutil.copytree(jpeg_shards, tmp_path / "t")
    ds = ShardDataset(tmp_path / "t", fields=("image", "landmarks"))
    ds.decode_threads = 1
    ds.__getitems__([0, 1])  # maps shard 0
    p = tmp_path / "t" / "shard-000000.h5"
    with open(p, "r+b") as fh:
        fh.truncate(p.stat().st_size // 2)
    with pytest.raises(FerdataError, match=r"shard-000000\.h5: file ends inside the data"):
        ds.__getitems__([40, 60])


def test_first_failing_item_is_reported_with_many_threads():
    """Threads take items dynamically; the error names the first bad item, and all before it are done."""
    from ferdata.torch._fields import DecodeError, run_chunks

    bad = {70, 23, 300}
    raw = list(range(400))
    for threads in (1, 2, 4):
        out = np.zeros((400, 1), np.int64)

        def decode(x, dst):
            if x in bad:
                raise DecodeError(f"bad {x}")
            dst[...] = x + 1
        with pytest.raises(DecodeError) as info:
            run_chunks(decode, raw, out, threads)
        assert info.value.item == 23
        assert np.array_equal(out[:23, 0], np.arange(1, 24))
        good = np.zeros((400, 1), np.int64)
        run_chunks(lambda x, dst: dst.__setitem__(..., x * 3), raw, good, threads)
        assert np.array_equal(good[:, 0], np.arange(400) * 3)


def test_worker_batches_arrive_as_shared_tensors(jpeg_shards):
    """Batches cross from a worker as tensors in shared memory (never pickled arrays), same bytes."""
    from torch.utils.data import DataLoader

    ds = ShardIterableDataset(jpeg_shards, seed=2, batch_size=64, fields=("image", "label"))
    here = list(ds)
    there = list(DataLoader(ds, batch_size=None, num_workers=1, multiprocessing_context="fork"))
    assert len(here) == len(there)
    for a, b in zip(here, there):
        assert isinstance(b["image"], torch.Tensor) and b["image"].is_shared()
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])


def test_batches_equal_a_plain_one_by_one_decode(jpeg_shards):
    """End to end, order and bytes: every batch image is what h5py + simplejpeg give for
    the sample its ``index`` names, decoded alone (no memory map, no threads)."""
    import json

    import simplejpeg

    m = json.loads((jpeg_shards / "manifest.json").read_text())
    shards = sorted(((e["first_sample"], e["n"], name) for name, e in m["shards"].items()))
    plain = {}
    for first, n, name in shards:
        with h5py.File(jpeg_shards / name, "r") as f:
            off = f["image_offsets"][:]
            for r in range(n):
                plain[first + r] = simplejpeg.decode_jpeg(f["image"][off[r]:off[r + 1]], colorspace="RGB")
    ds = ShardIterableDataset(jpeg_shards, seed=7, batch_size=40, fields=("image", "index"))
    ds.decode_threads = 3
    seen = []
    for b in ds:
        for img, g in zip(b["image"], b["index"].tolist()):
            assert np.array_equal(img.permute(1, 2, 0).numpy(), plain[g])
            seen.append(g)
    assert seen == ds.epoch_order(0).tolist() and sorted(seen) == sorted(plain)


def test_close_unmaps_the_shards(jpeg_shards):
    ds = ShardDataset(jpeg_shards, fields=("image", "landmarks"))
    ds.__getitems__([1, 150])
    maps = [c["_map"] for _, c in ds._source._handles._cache().values()]
    assert len(maps) == 2
    ds.close()
    assert all(m._map.closed and m._fh.closed for m in maps)
    assert ds.__getitems__([2])[0]["image"].shape[0] == 3  # reopened on the next read
