"""ferdata export: every field read back by the formats' own readers (webdataset, Hugging Face
datasets, a plain walk of the image folder) equals what the shards hold."""
import glob
import io
import json
import os
import re
import shutil
import signal
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from ferdata.config import RenderConfig
from ferdata.errors import FerdataError, Interrupted, ShardError
from ferdata.labels import CLASSES
from ferdata.render.run import render
from ferdata.shards.export import RECORD, export_shards
from ferdata.shards.manifest import load_manifest
from ferdata.shards.reader import read_images, shard_encoding
from ferdata.signals import stop_on_signals
from ferdata.shards.schema import unpack_masks

SPLITS = ["train", "test"]  # of the sample's two faces, written into a copy of its face store


def _faces_with_splits(sample_dir, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    faces = folder / "faces.h5"
    shutil.copy(sample_dir / "faces.h5", faces)
    with h5py.File(faces, "r+") as f:
        del f["split"]
        f.create_dataset("split", data=np.array(SPLITS, dtype=object), dtype=h5py.string_dtype("utf-8"))
    return faces


@pytest.fixture(scope="module")
def renders(sample_dir, tmp_path_factory):
    """A JPEG render (96 px, 32 samples in 3 shards) and a gray raw one (64 px, 24 in 2)."""
    root = tmp_path_factory.mktemp("export")
    faces = _faces_with_splits(sample_dir, root / "store")
    bg = sample_dir / "backgrounds"
    render(faces, bg, root / "jpeg", RenderConfig(size=96, per_face=16, shard_size=12, encoding="jpeg"))
    render(faces, bg, root / "raw", RenderConfig(size=64, per_face=12, shard_size=16, gray=True, encoding="raw"))
    return {"jpeg": root / "jpeg", "raw": root / "raw", "faces": faces, "root": root}


def reference(folder: Path, faces: Path) -> dict:
    """key -> every field, read with h5py and ferdata.shards.reader."""
    with h5py.File(faces, "r") as f:
        split = [s.decode() for s in f["split"][:]]
        source = [s.decode() for s in f["source"][:]]
    out = {}
    for name in sorted(load_manifest(folder)["shards"]):
        with h5py.File(folder / name, "r") as f:
            n, size, first = len(f["label"]), int(f.attrs["size"]), int(f.attrs["first_sample"])
            subjects, pnames = json.loads(f.attrs["subjects"]), json.loads(f.attrs["param_names"])
            images = read_images(f, 0, n)
            off = f["image_offsets"][:] if shard_encoding(f) == "jpeg" else None
            for j in range(n):
                fi, g = int(f["face_index"][j]), first + j
                out[f"{g:09d}"] = {
                    "pixels": images[j], "mask": unpack_masks(f["mask"][j:j + 1], size)[0],
                    "jpeg": f["image"][off[j]:off[j + 1]].tobytes() if off is not None else None,
                    "meta": {"index": g, "label": int(f["label"][j]), "class_name": CLASSES[int(f["label"][j])],
                             "subject": subjects[int(f["subject"][j])], "split": split[fi], "source": source[fi],
                             "face_index": fi, "sample": g // int(f.attrs["n_faces"]),
                             "master_seed": int(f.attrs["master_seed"]),
                             "landmarks": [float(v) for v in f["landmarks"][j].reshape(-1)],
                             "params": dict(zip(pnames, (float(v) for v in f["params"][j]))),
                             "background": int(f["background"][j]), "bg_box": [int(v) for v in f["bg_box"][j]],
                             "shard": name}}
    return out


def _pixels(data, gray: bool) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    arr = np.asarray(img.convert("L" if gray else "RGB"))
    return arr[..., None] if gray else arr


def _check_meta(got: dict, want: dict):
    for k, v in want.items():
        assert got[k] == v, (k, got[k], v)


def _check_image(data: bytes, ext: str, ref: dict):
    if ref["jpeg"] is not None:  # stored JPEG bytes, not re-encoded
        assert ext == "jpg" and data == ref["jpeg"]
    else:  # raw shards: a lossless PNG
        assert ext == "png"
        np.testing.assert_array_equal(_pixels(data, ref["pixels"].shape[2] == 1), ref["pixels"])


@pytest.mark.parametrize("kind", ["jpeg", "raw"])
def test_webdataset_round_trip(renders, tmp_path, kind):
    import webdataset as wds

    ref = reference(renders[kind], renders["faces"])
    res = export_shards(renders[kind], tmp_path / "wds", "webdataset")
    assert res["samples"] == res["samples_written"] == len(ref) and res["face_store"] == str(renders["faces"])
    urls = sorted(glob.glob(str(tmp_path / "wds" / "shard-*.tar")))
    names = sorted(load_manifest(renders[kind])["shards"])
    assert [Path(u).name for u in urls] == [Path(n).stem + ".tar" for n in names]
    raw = list(wds.WebDataset(urls, shardshuffle=False))
    assert [s["__key__"] for s in raw] == sorted(ref)
    ext = "jpg" if kind == "jpeg" else "png"
    for s in raw:
        _check_image(s[ext], ext, ref[s["__key__"]])
    decoded = list(wds.WebDataset(urls, shardshuffle=False).decode("l8" if kind == "raw" else "rgb8"))
    for s in decoded:
        r = ref[s["__key__"]]
        assert s["cls"] == r["meta"]["label"]
        _check_meta(s["json"], r["meta"])
        mask = s["mask.png"] if kind == "raw" else s["mask.png"][..., 0]  # rgb8 gives 3 equal channels
        np.testing.assert_array_equal(mask, r["mask"])
        if kind == "raw":
            np.testing.assert_array_equal(s[ext], r["pixels"][..., 0])


def _walk(out: Path) -> dict:
    """A plain walk of the image folder: key -> (split folder, class folder, file bytes, ext)."""
    found = {}
    for folder, dirs, files in os.walk(out):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "masks"]
        rel = Path(folder).relative_to(out).parts
        for f in files:
            if len(rel) == 2:
                found[Path(f).stem] = (rel[0], rel[1], (Path(folder) / f).read_bytes(), Path(f).suffix[1:])
    return found


@pytest.mark.parametrize("kind", ["jpeg", "raw"])
def test_imagefolder_round_trip(renders, tmp_path, kind):
    ref = reference(renders[kind], renders["faces"])
    out = tmp_path / "if"
    export_shards(renders[kind], out, "imagefolder")
    found = _walk(out)
    assert sorted(found) == sorted(ref)
    rows = {}
    for split in SPLITS:
        for line in (out / split / "metadata.jsonl").read_text().splitlines():
            row = json.loads(line)
            rows[Path(row["file_name"]).stem] = row
            assert (out / split / row["file_name"]).is_file()
    assert sorted(rows) == sorted(ref)
    for key, (split, cls, data, ext) in found.items():
        r = ref[key]
        assert (split, cls) == (r["meta"]["split"], r["meta"]["class_name"])
        _check_image(data, ext, r)
        _check_meta(rows[key], r["meta"])
        mask = np.asarray(Image.open(out / rows[key]["mask_path"]))
        np.testing.assert_array_equal(mask, r["mask"])


def test_imagefolder_reads_with_hugging_face(renders, tmp_path, monkeypatch):
    datasets = _offline_datasets(tmp_path, monkeypatch)
    ref = reference(renders["jpeg"], renders["faces"])
    export_shards(renders["jpeg"], tmp_path / "if", "imagefolder")
    ds = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "if"), cache_dir=str(tmp_path / "cache"))
    assert sorted(ds) == sorted(SPLITS)  # the split folders are Hugging Face's splits; masks/ is not read
    for split in SPLITS:
        for row in ds[split]:
            key = f"{row['index']:09d}"
            _check_meta(row, ref[key]["meta"])
            np.testing.assert_array_equal(np.asarray(row["image"]), ref[key]["pixels"])
    assert sum(len(ds[s]) for s in SPLITS) == len(ref)


def _offline_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import datasets

    return datasets


@pytest.mark.parametrize("kind", ["jpeg", "raw"])
def test_parquet_round_trip_with_hugging_face(renders, tmp_path, monkeypatch, kind):
    datasets = _offline_datasets(tmp_path, monkeypatch)
    ref = reference(renders[kind], renders["faces"])
    export_shards(renders[kind], tmp_path / "pq", "parquet")
    files = sorted(glob.glob(str(tmp_path / "pq" / "*.parquet")))
    ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "cache"))
    assert isinstance(ds.features["image"], datasets.Image) and ds.features["label"].names == list(CLASSES)
    assert ds["key"] == sorted(ref)
    for row in ds:
        r = ref[row["key"]]
        _check_meta(row, r["meta"])
        np.testing.assert_array_equal(np.asarray(row["mask"]), r["mask"])
        gray = r["pixels"].shape[2] == 1
        image = np.asarray(row["image"].convert("L" if gray else "RGB"))
        np.testing.assert_array_equal(image.reshape(r["pixels"].shape), r["pixels"])
    stored = ds.cast_column("image", datasets.Image(decode=False))
    for row in stored:
        _check_image(row["image"]["bytes"], row["image"]["path"].rsplit(".", 1)[1], ref[row["key"]])


def _mtimes(out: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != RECORD}


@pytest.mark.parametrize("to", ["webdataset", "imagefolder", "parquet"])
def test_rerun_skips_complete_outputs_and_redoes_a_missing_one(renders, tmp_path, to):
    out = tmp_path / to
    first = export_shards(renders["jpeg"], out, to)
    before = _mtimes(out)
    again = export_shards(renders["jpeg"], out, to)
    assert (again["shards_written"], again["shards_skipped"], again["samples_written"]) == (0, 3, 0)
    assert _mtimes(out) == before
    ext = {"webdataset": "tar", "parquet": "parquet"}.get(to)
    (out / (f"shard-000001.{ext}" if ext else ".parts/shard-000001.jsonl")).unlink()
    third = export_shards(renders["jpeg"], out, to)
    assert (third["shards_written"], third["samples_written"]) == (1, 12)
    assert sorted(_mtimes(out)) == sorted(before) and first["samples"] == third["samples"] == 32


def test_unfinished_render_needs_partial_then_resumes(renders, sample_dir, tmp_path):
    cfg = RenderConfig(size=96, per_face=16, shard_size=12, encoding="jpeg")
    src = tmp_path / "half"
    render(renders["faces"], sample_dir / "backgrounds", src, cfg, shards="0:1")
    with pytest.raises(ShardError, match="unfinished render: 2 of 3 shards not made.*shard-000001.h5, shard-000002.h5"):
        export_shards(src, tmp_path / "out", "webdataset")
    assert not (tmp_path / "out").exists()
    res = export_shards(src, tmp_path / "out", "webdataset", partial=True)
    assert res["shards_written"] == 1 and res["missing"] == ["shard-000001.h5", "shard-000002.h5"]
    render(renders["faces"], sample_dir / "backgrounds", src, cfg)
    res = export_shards(src, tmp_path / "out", "webdataset")
    assert (res["shards_written"], res["shards_skipped"], res["missing"]) == (2, 1, [])
    assert sorted(p.name for p in (tmp_path / "out").glob("*.tar")) == [f"shard-00000{k}.tar" for k in range(3)]


def test_no_face_store_exports_null_split_and_source(renders, sample_dir, tmp_path):
    faces = _faces_with_splits(sample_dir, tmp_path / "gone")
    src = tmp_path / "r"
    render(faces, sample_dir / "backgrounds", src, RenderConfig(size=64, per_face=4, shard_size=8))
    shutil.rmtree(tmp_path / "gone")
    res = export_shards(src, tmp_path / "if", "imagefolder")
    assert res["face_store"] is None and res["files"] == ["all/metadata.jsonl"]
    rows = [json.loads(ln) for ln in (tmp_path / "if" / "all" / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and {(r["split"], r["source"]) for r in rows} == {(None, None)}
    res = export_shards(src, tmp_path / "if2", "imagefolder", faces=renders["faces"])
    assert res["face_store"] == str(renders["faces"]) and sorted(res["files"]) == ["test/metadata.jsonl",
                                                                                   "train/metadata.jsonl"]


@pytest.mark.parametrize("to", ["webdataset", "imagefolder"])
def test_ctrl_c_leaves_no_half_file_and_the_rerun_finishes(renders, tmp_path, monkeypatch, to):
    import ferdata.shards.export as export

    out = tmp_path / to
    monkeypatch.setattr(export._Reporter, "sample", lambda self, n=1: self.emit(done=self.done + n))  # every sample

    def stop(event):
        if event["done"] == 14:  # shard 1 holds samples 12..23 (the image folder reports writes done, later)
            signal.raise_signal(signal.SIGINT)

    with stop_on_signals(), pytest.raises(Interrupted, match=r"shard-00000[12]\.h5") as exc:
        export_shards(renders["jpeg"], out, to, on_progress=stop)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert not [f for f in files if ".tmp" in f], files
    stopped_in = int(re.search(r"shard-00000(\d)", exc.value.where).group(1))
    done = [f"shard-00000{k}" for k in range(stopped_in)]
    if to == "webdataset":
        assert files == sorted([RECORD] + [f"{d}.tar" for d in done])
    else:  # the images written so far are whole files; the shard stopped in is not marked done
        assert sorted(f for f in files if f.startswith(".parts")) == [f".parts/{d}.jsonl" for d in done]
    res = export_shards(renders["jpeg"], out, to)
    assert (res["shards_written"], res["shards_skipped"]) == (3 - stopped_in, stopped_in)
    if to == "imagefolder":
        assert len(_walk(out)) == 32


def test_progress_events_stage_done_total(renders, tmp_path):
    events = []
    export_shards(renders["raw"], tmp_path / "o", "parquet", on_progress=lambda e: events.append(dict(e)))
    assert events[0] == {"stage": "reading the render", "done": 0, "total": None}
    assert events[1] == {"stage": "reading the render", "done": 0, "total": 24}
    assert [e["stage"] for e in events if e["stage"].startswith("exporting")][:1] == ["exporting shard-000000.h5"]
    assert events[-1] == {"stage": "done", "done": 24, "total": 24}
    done = [e["done"] for e in events]
    assert done == sorted(done)
    events.clear()
    export_shards(renders["raw"], tmp_path / "o", "parquet", on_progress=lambda e: events.append(dict(e)))
    assert events[1:] == [{"stage": "reading the render", "done": 24, "total": 24},
                          {"stage": "done", "done": 24, "total": 24}]


def test_bad_outputs_and_formats(renders, tmp_path):
    src = renders["jpeg"]
    with pytest.raises(FerdataError, match="inside the render folder"):
        export_shards(src, src / "export", "webdataset")
    with pytest.raises(FerdataError, match="inside the render folder"):
        export_shards(src, src, "parquet")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FerdataError, match="is a file"):
        export_shards(src, tmp_path / "file", "webdataset")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    with pytest.raises(FerdataError, match="not empty and holds no ferdata export"):
        export_shards(src, tmp_path / "busy", "webdataset")
    with pytest.raises(FerdataError, match="unknown export format 'zip'"):
        export_shards(src, tmp_path / "z", "zip")
    export_shards(src, tmp_path / "w", "webdataset")
    with pytest.raises(FerdataError, match="another export.*format"):
        export_shards(src, tmp_path / "w", "parquet")
    with pytest.raises(FerdataError, match="another export.*config_hash"):
        export_shards(renders["raw"], tmp_path / "w", "webdataset")
    with pytest.raises(ShardError, match="no manifest"):
        export_shards(tmp_path / "busy", tmp_path / "x", "webdataset")


def test_wrong_face_store_is_refused(renders, sample_dir, tmp_path):
    with pytest.raises(FerdataError, match="no such face store"):
        export_shards(renders["jpeg"], tmp_path / "a", "webdataset", faces=tmp_path / "nope.h5")
    other = tmp_path / "other.h5"
    shutil.copy(sample_dir / "faces.h5", other)
    with h5py.File(other, "r+") as f:
        lab = f["label"][:]
        f["label"][:] = lab[::-1]
    with pytest.raises(FerdataError, match="not the face store the render was made from"):
        export_shards(renders["jpeg"], tmp_path / "b", "webdataset", faces=other)
    assert not (tmp_path / "b" / "shard-000000.tar").exists()


def test_parquet_without_pyarrow_is_one_error(renders, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(FerdataError, match=r"pip install 'ferdata\[export\]'"):
        export_shards(renders["jpeg"], tmp_path / "p", "parquet")
    assert not (tmp_path / "p").exists()
