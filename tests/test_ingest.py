"""ferdata ingest end to end on fixture trees in each dataset's real layout."""
import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import dataset_fixtures as fx
from ferdata.cli import main
from ferdata.config import IngestConfig
from ferdata.datasets import read_dataset
from ferdata.facestore import FaceStore
from ferdata.ingest import ingest, report_path
from ferdata.labels import CLASSES


@pytest.fixture(scope="module")
def faces():
    return fx.sample_faces()


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r


BUILDERS = {
    "ckplus": lambda root, f: fx.make_ckplus(root, f, n_subjects=2, n_sequences=1),
    "fer2013": lambda root, f: fx.make_fer2013(root, f, n_rows=14),
    "ferplus": lambda root, f: fx.make_ferplus(root, f),
    "jaffe": lambda root, f: fx.make_jaffe(root, f),
    "bu3dfe": lambda root, f: fx.make_bu3dfe(root, f),
    "rafd": lambda root, f: fx.make_rafd(root, f, n_subjects=1),
    "affectnet": lambda root, f: fx.make_affectnet(root, f, n_train=4, n_val=2),
    "folder": lambda root, f: fx.make_folder(root, f, n_per_class=2),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_ingest_every_format(tmp_path, faces, name):
    root = BUILDERS[name](tmp_path / "data", faces)
    n_records = sum(1 for _ in read_dataset(name, root))
    out = tmp_path / f"{name}.h5"
    r = run("ingest", name, root, "-o", out)
    assert r.exit_code == 0, r.output
    with FaceStore(out) as fs:
        assert len(fs) == n_records  # every fixture face is found and aligned
        S = fs.size
        assert fs.images.shape == (len(fs), S, S, 3)
        assert fs.masks.shape == (len(fs), S, S)
        assert set(fs.classes) <= set(CLASSES)
        assert fs.dataset == name
        if name in ("fer2013", "ferplus"):
            assert S == 48 and np.isnan(fs.landmarks).all()
            assert (fs.masks[:] == 255).all()
            assert set(fs.splits) <= {"train", "val", "test"}
        else:
            assert S == 256 and np.isfinite(fs.landmarks).all()
            m = fs.masks[0]
            assert 0.15 < (m > 0).mean() < 0.7
        if name in ("ckplus", "jaffe", "bu3dfe", "rafd"):
            assert (fs.subjects != "").all()
        if name == "ferplus":
            assert "votes" in fs.f
    rep = json.loads(report_path(out).read_text())
    assert rep["ingested"] == n_records
    r = run("inspect", out)
    assert r.exit_code == 0 and "per_class" in r.output
    png = tmp_path / f"{name}.png"
    r = run("show", out, "--n", 9, "-o", png)
    assert r.exit_code == 0 and png.stat().st_size > 1000


def test_workers_give_identical_store(tmp_path, faces):
    root = fx.make_folder(tmp_path / "data", faces, n_per_class=2)
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    recs = lambda: read_dataset("folder", root)  # noqa: E731
    ingest(recs(), a, "folder", IngestConfig(), workers=1)
    ingest(recs(), b, "folder", IngestConfig(), workers=2)
    with h5py.File(a) as fa, h5py.File(b) as fb:
        for k in ("image", "mask", "landmarks", "label", "source"):
            np.testing.assert_array_equal(fa[k][:], fb[k][:])


def test_unreadable_and_faceless_files_are_reported(tmp_path, faces):
    root = fx.make_folder(tmp_path / "data", faces, n_per_class=1)
    (root / "happy" / "broken.png").write_bytes(b"not a png")
    import cv2
    cv2.imwrite(str(root / "sad" / "wall.png"), np.full((120, 120, 3), 90, np.uint8))
    out = tmp_path / "x.h5"
    r = run("ingest", "folder", root, "-o", out)
    assert r.exit_code == 0, r.output
    rep = json.loads(report_path(out).read_text())
    reasons = {d["source"]: d["reason"] for d in rep["skipped_files"]}
    assert any("broken.png" in s and "cannot read" in why for s, why in reasons.items())
    assert any("wall.png" in s and "no face" in why for s, why in reasons.items())
    # --on-error raise: one line naming the file, no face store, no temporary left behind
    out2 = tmp_path / "y.h5"
    r = CliRunner().invoke(main, ["ingest", "folder", str(root), "-o", str(out2), "--on-error", "raise"])
    assert r.exit_code == 1
    assert r.output.startswith("Error: ") and ("broken.png" in r.output or "wall.png" in r.output)
    assert "Traceback" not in r.output
    assert not out2.exists() and not list(tmp_path.glob("y.h5.tmp-*"))


@pytest.mark.parametrize("case", ["missing", "empty", "badcsv", "unknown"])
def test_bad_input_one_line_errors(tmp_path, faces, case):
    if case == "missing":
        args = ["ingest", "folder", str(tmp_path / "nope"), "-o", str(tmp_path / "o.h5")]
        expect = "nope"
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        args = ["ingest", "folder", str(tmp_path / "empty"), "-o", str(tmp_path / "o.h5")]
        expect = "no labelled images"
    elif case == "badcsv":
        root = fx.make_fer2013(tmp_path / "fer", faces, n_rows=5)
        csv = root / "fer2013.csv" if root.is_dir() else root
        lines = csv.read_text().splitlines()
        lines[3] = "3,1 2 3,Training"
        csv.write_text("\n".join(lines) + "\n")
        args = ["ingest", "fer2013", str(csv), "-o", str(tmp_path / "o.h5"), "--on-error", "raise"]
        expect = "row"
    else:
        args = ["ingest", "nosuch", str(tmp_path), "-o", str(tmp_path / "o.h5")]
        expect = "nosuch"
    r = CliRunner().invoke(main, args)
    assert r.exit_code != 0
    assert expect in r.output, r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "o.h5").exists()


def test_debug_shows_traceback(tmp_path):
    r = CliRunner().invoke(main, ["--debug", "ingest", "folder", str(tmp_path / "nope"), "-o", str(tmp_path / "o.h5")])
    assert r.exit_code != 0 and r.exception is not None


def test_sample_command(tmp_path):
    r = run("sample", "-o", tmp_path / "s")
    assert r.exit_code == 0, r.output
    with FaceStore(tmp_path / "s" / "faces.h5") as fs:
        assert len(fs) == 2 and sorted(fs.classes) == ["happiness", "neutral"]
    assert (tmp_path / "s" / "backgrounds" / "annotations" / "instances_sample.json").exists()
