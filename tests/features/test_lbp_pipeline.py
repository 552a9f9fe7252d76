"""``ferdata lbp`` in one process (issue 23.1): gray decode on threads, the next block read
while the kernels code this one, a shard's hash taken while the next shard is coded —
the same codes, and a stop or a failure at any point leaves every shard whole."""
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest

from ferdata.errors import ShardError
from ferdata.features import add_lbp_to_shards, lbp
from ferdata.features import lbp_h5, lbp_shards
from ferdata.features.lbp_io import to_gray
from ferdata.shards.manifest import file_sha256, load_manifest, shard_lbp
from ferdata.shards.reader import read_images
from fixtures.lbp_reference import small_shard, small_shard_folder


@pytest.mark.parametrize("channels,encoding", [(3, "jpeg"), (1, "jpeg"), (3, "raw")])
def test_gray_read_equals_rgb_read_then_gray(tmp_path, channels, encoding):
    small_shard(tmp_path / "s.h5", n=150, channels=channels, encoding=encoding)
    with h5py.File(tmp_path / "s.h5", "r") as f:
        ref = to_gray(read_images(f, 0, 150))
        for pool in (None, ThreadPoolExecutor(2)):
            got = read_images(f, 3, 150, gray=True, pool=pool)
            assert got.dtype == np.uint8 and got.shape == (147, 24, 24)
            np.testing.assert_array_equal(got, ref[3:])
        assert read_images(f, 5, 5, gray=True).shape == (0, 24, 24)


def test_a_corrupt_jpeg_read_on_threads_is_named(tmp_path):
    small_shard(tmp_path / "s.h5", n=100)
    with h5py.File(tmp_path / "s.h5", "r+") as f:
        off = f["image_offsets"][:]
        f["image"][off[70] + 2:off[71] - 2] = 0
    with h5py.File(tmp_path / "s.h5", "r") as f:
        with pytest.raises(ShardError, match=r"s\.h5: sample 70: corrupt JPEG"):
            read_images(f, 0, 100, gray=True, pool=ThreadPoolExecutor(2))


def test_blocks_read_ahead_give_the_codes_of_one_pass(tmp_path):
    imgs = small_shard(tmp_path / "s.h5", n=11)
    tmp = lbp_h5.lbp_copy(tmp_path / "s.h5", "uniform", 8, 1.0, block=2, threads=2)
    with h5py.File(tmp, "r") as f, h5py.File(tmp_path / "s.h5", "r") as src:
        np.testing.assert_array_equal(f["lbp/uniform_P8_R1"][:], lbp(to_gray(read_images(src, 0, 11)), "uniform"))
    assert len(imgs) == 11


def _consistent(folder) -> bool:
    """Every listed shard is the file its manifest entry describes, nothing pending."""
    return all(e["sha256"] == file_sha256(folder / n) and e["bytes"] == (folder / n).stat().st_size
               and "pending" not in e for n, e in load_manifest(folder)["shards"].items())


def test_ctrl_c_in_a_later_shard_keeps_the_earlier_ones_and_leaves_the_rest_whole(tmp_path, monkeypatch):
    folder = small_shard_folder(tmp_path / "r")
    before = {n: file_sha256(folder / n) for n in load_manifest(folder)["shards"]}
    real, calls = lbp_h5.lbp, []

    def stop_in_third(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(lbp_h5, "lbp", stop_in_third)
    with pytest.raises(KeyboardInterrupt):
        add_lbp_to_shards(folder, "circle", 8, 1, workers=2)
    m = load_manifest(folder)["shards"]
    assert m["shard-000000.h5"]["lbp"] == m["shard-000001.h5"]["lbp"] == ["lbp/circle_P8_R1"]
    assert file_sha256(folder / "shard-000002.h5") == before["shard-000002.h5"]
    assert m["shard-000002.h5"].get("lbp", []) == []
    assert not list(folder.glob("*.tmp-*"))
    assert _consistent(folder)
    monkeypatch.setattr(lbp_h5, "lbp", real)   # locks were released: the rerun finishes the rest
    assert add_lbp_to_shards(folder, "circle", 8, 1, workers=2) == {
        "shard-000000.h5": False, "shard-000001.h5": False, "shard-000002.h5": True}


def test_a_failed_hash_is_that_shards_problem_only(tmp_path, monkeypatch):
    folder = small_shard_folder(tmp_path / "r")
    real = lbp_shards.file_sha256

    def bad_disk(path):
        if "shard-000001.h5.tmp-" in str(path):
            raise OSError(5, "Input/output error")
        return real(path)

    monkeypatch.setattr(lbp_shards, "file_sha256", bad_disk)
    with pytest.raises(ShardError, match=r"1 shard\(s\) could not get lbp/circle_P8_R1 \(2 added.*Input/output"):
        add_lbp_to_shards(folder, "circle", 8, 1, workers=2)
    m = load_manifest(folder)["shards"]
    assert [m[f"shard-00000{k}.h5"].get("lbp", []) for k in range(3)] == [["lbp/circle_P8_R1"], [], ["lbp/circle_P8_R1"]]
    assert not list(folder.glob("*.tmp-*")) and _consistent(folder)


def test_blocks_never_end_on_a_few_crops():
    from ferdata.features.lbp_h5 import block_bounds

    assert block_bounds(2078, 1024) == [(0, 1024), (1024, 2078)]          # 30 left: joined
    assert block_bounds(2600, 1024) == [(0, 1024), (1024, 2048), (2048, 2600)]
    assert block_bounds(10, 1024) == [(0, 10)] and block_bounds(0, 1024) == []


def test_lbp_says_it_is_compiling_on_a_fresh_kernel_cache(tmp_path, monkeypatch):
    """The status comes before any image when the kernel the first block runs is not compiled."""
    import importlib

    from ferdata.features.lbp_run import add_lbp

    L = importlib.import_module("ferdata.features.lbp")

    folder = small_shard_folder(tmp_path / "r", shards=1)
    seen = []
    monkeypatch.setattr(L, "needs_compile", lambda *a, **k: seen.append((a, k)) or True)
    notes = []
    add_lbp(folder, "uniform", 8, 1, status=notes.append, start=lambda total, unit: (lambda n: notes.append(n)))
    assert notes[0] == "compiling LBP kernels, first run only" and notes[1:] == [9]
    assert seen[0][0][:3] == ("uniform", 8, 1) and seen[0][0][4] == (9, 24, 24)
    monkeypatch.setattr(L, "needs_compile", lambda *a, **k: False)
    notes.clear()
    add_lbp(folder, "circle", 8, 1, status=notes.append)
    assert notes == []


def test_ctrl_c_while_waiting_for_a_hash_keeps_that_shard_and_removes_the_next_temp(tmp_path, monkeypatch):
    """Found in review: Ctrl-C while shard k's hash was awaited (shard k+1 already coded) lost
    shard k and left shard k+1's temp behind."""
    import ferdata.parallel as par

    folder = small_shard_folder(tmp_path / "r")
    before = {n: file_sha256(folder / n) for n in load_manifest(folder)["shards"]}
    real_pool = par.thread_pool

    class Stopped:   # the first wait for a hash is interrupted; the future itself completes
        def __init__(self, fut):
            self.fut, self.hit = fut, False

        def result(self):
            if not self.hit:
                self.hit = True
                raise KeyboardInterrupt
            return self.fut.result()

        def cancel(self):
            return self.fut.cancel()

        def exception(self):
            return self.fut.exception()

    class Pool:
        def __init__(self, pool):
            self.pool, self.first = pool, True

        def submit(self, *a):
            fut = self.pool.submit(*a)
            if self.first:
                self.first = False
                return Stopped(fut)
            return fut

    monkeypatch.setattr(par, "thread_pool", lambda n, name: Pool(real_pool(n, name)) if name == "lbp-hash"
                        else real_pool(n, name))
    with pytest.raises(KeyboardInterrupt):
        add_lbp_to_shards(folder, "circle", 8, 1, workers=2)
    m = load_manifest(folder)["shards"]
    # the shard whose hash was awaited and the one coded after it are both finished and kept
    assert m["shard-000000.h5"]["lbp"] == m["shard-000001.h5"]["lbp"] == ["lbp/circle_P8_R1"]
    assert file_sha256(folder / "shard-000002.h5") == before["shard-000002.h5"]
    assert not list(folder.glob("*.tmp-*")) and _consistent(folder)
    monkeypatch.setattr(par, "thread_pool", real_pool)
    assert add_lbp_to_shards(folder, "circle", 8, 1, workers=2) == {
        "shard-000000.h5": False, "shard-000001.h5": False, "shard-000002.h5": True}


def test_a_changed_shard_is_reported_as_changed_even_when_its_jpegs_no_longer_decode(tmp_path):
    """The source's sha256 is taken while it is coded: a shard whose bytes changed (here a
    JPEG zeroed, same size) is still reported as differing from the manifest, untouched,
    and the other shards are done."""
    folder = small_shard_folder(tmp_path / "r", n=[40, 40, 40])
    p = folder / "shard-000001.h5"
    with h5py.File(p, "r+") as f:
        off = f["image_offsets"][:]
        f["image"][off[7] + 2:off[8] - 2] = 0
    changed = p.read_bytes()
    with pytest.raises(ShardError, match=r"shard-000001\.h5: sha256 differs from the manifest") as ei:
        add_lbp_to_shards(folder, "circle", 8, 1, workers=2)
    assert "corrupt JPEG" not in str(ei.value)
    assert ei.value.result == {"shard-000000.h5": True, "shard-000002.h5": True}
    assert p.read_bytes() == changed and not list(folder.glob("*.tmp-*"))


def test_a_changed_shard_that_still_decodes_is_refused_before_its_temp_is_used(tmp_path, monkeypatch):
    """The check is waited for before the temp is published: a slow hash that fails still
    stops that shard, and nothing of it is renamed or recorded."""
    import time

    folder = small_shard_folder(tmp_path / "r", n=[30, 30])
    m0 = load_manifest(folder)["shards"]["shard-000000.h5"]
    real = lbp_shards.file_sha256

    def slow_wrong(path, *a):
        if path.name == "shard-000000.h5" and path.parent == folder:
            time.sleep(0.5)
            return "0" * 64
        return real(path, *a)

    monkeypatch.setattr(lbp_shards, "file_sha256", slow_wrong)
    with pytest.raises(ShardError, match=r"shard-000000\.h5: sha256 differs") as ei:
        add_lbp_to_shards(folder, "circle", 8, 1, workers=2)
    assert ei.value.result == {"shard-000001.h5": True}
    assert load_manifest(folder)["shards"]["shard-000000.h5"] == m0
    assert shard_lbp(folder / "shard-000000.h5") == []
    assert not list(folder.glob("*.tmp-*"))
