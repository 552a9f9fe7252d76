"""ferdata ingest end to end on fixture trees in each dataset's real layout."""
import dataclasses
import json
import os
import subprocess
import sys

import cv2
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from fixtures import dataset_fixtures as fx
from ferdata.cli import main
from ferdata.config import IngestConfig
from ferdata.datasets import read_dataset
from ferdata.errors import FerdataError
from ferdata.faces.store import FaceStore, FaceStoreWriter
from ferdata.faces.ingest import ingest, read_image_rgb, report_path
from ferdata.atomic import host_tag
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


@pytest.mark.slow
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
    # an existing face store is never replaced silently: one error before any work, then --overwrite
    before = out.read_bytes()
    r = run("ingest", "folder", root, "-o", out)
    assert r.exit_code == 1 and r.output.startswith("Error: ") and "already there" in r.output
    assert "--overwrite" in r.output and out.read_bytes() == before
    r = run("ingest", "folder", root, "-o", out, "--overwrite")
    assert r.exit_code == 0, r.output


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
    """A real process: the traceback is printed with --debug and never without."""
    args = ["ingest", "folder", str(tmp_path / "nope"), "-o", str(tmp_path / "o.h5")]
    plain = subprocess.run([sys.executable, "-m", "ferdata.cli", *args], capture_output=True, text=True)
    debug = subprocess.run([sys.executable, "-m", "ferdata.cli", "--debug", *args], capture_output=True, text=True)
    assert plain.returncode == 1 and debug.returncode == 1
    assert plain.stderr.strip().splitlines() == [f"Error: {tmp_path / 'nope'}: image folder does not exist"]
    assert "Traceback (most recent call last)" not in plain.stderr
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("ferdata.errors.DatasetFormatError: ")


def _jpeg_bytes(face):
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(face, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def test_truncated_jpeg_is_not_a_good_face(tmp_path, faces):
    root = fx.make_folder(tmp_path / "data", faces, n_per_class=1)
    data = _jpeg_bytes(faces[0])
    (root / "happy" / "cut.jpg").write_bytes(data[: len(data) * 6 // 10])
    out = tmp_path / "raise.h5"
    r = CliRunner().invoke(main, ["ingest", "folder", str(root), "-o", str(out), "--on-error", "raise"])
    assert r.exit_code == 1, r.output
    assert r.output.startswith("Error: ") and "cut.jpg: truncated JPEG" in r.output
    assert not out.exists() and not list(tmp_path.glob("raise.h5.tmp-*"))
    out = tmp_path / "skip.h5"
    r = run("ingest", "folder", root, "-o", out)
    assert r.exit_code == 0, r.output
    rep = json.loads(report_path(out).read_text())
    assert [d["source"] for d in rep["skipped_files"]] == ["happy/cut.jpg"]
    assert "truncated JPEG" in rep["skipped_files"][0]["reason"]
    with FaceStore(out) as fs:
        assert "happy/cut.jpg" not in set(fs.sources) and len(fs) == 4


def test_complete_jpegs_pass_the_strict_check(tmp_path, faces):
    data = _jpeg_bytes(faces[0])
    ok, prog = cv2.imencode(".jpg", faces[1], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    for name, blob in [("plain.jpg", data), ("trailer.jpg", data + b"\x00" * 64 + b"camera trailer"),
                       ("progressive.jpg", prog.tobytes())]:
        (tmp_path / name).write_bytes(blob)
        assert read_image_rgb(tmp_path / name).shape[2] == 3
    (tmp_path / "cut.jpg").write_bytes(prog.tobytes()[:-100])
    with pytest.raises(FerdataError, match="cut.jpg: truncated JPEG"):
        read_image_rgb(tmp_path / "cut.jpg")


def test_full_disk_is_a_clean_error(tmp_path, faces):
    """ingest onto a 512 kB tmpfs: one Error line, exit 1, nothing left (it segfaulted, exit 139)."""
    root = fx.make_folder(tmp_path / "data", faces, n_per_class=1)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if m.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {m.stderr.strip()}")
    try:
        out = mnt / "faces.h5"
        r = subprocess.run([sys.executable, "-m", "ferdata.cli", "ingest", "folder", str(root), "-o", str(out)],
                           capture_output=True, text=True)
        assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("Error: ")]
        assert len(errors) == 1 and f"{out}: cannot write the face store (No space left on device" in errors[0]
        assert "Traceback" not in r.stderr
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_next_ingest_removes_this_hosts_dead_temps(tmp_path, faces):
    root = fx.make_folder(tmp_path / "data", faces, n_per_class=1)
    out = tmp_path / "o.h5"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead_here = tmp_path / f"o.h5.tmp-{host_tag()}-{gone.pid}"
    keep = [tmp_path / f"o.h5.tmp-otherhost-{gone.pid}",          # maybe a live job on another machine
            tmp_path / f"o.h5.tmp-{host_tag()}-{os.getppid()}",   # a live process here
            tmp_path / f"p.h5.tmp-{host_tag()}-{gone.pid}"]       # another output's temp
    for p in [dead_here, *keep]:
        p.write_bytes(b"\0" * 4096)
    r = run("ingest", "folder", root, "-o", out)
    assert r.exit_code == 0, r.output
    assert not dead_here.exists()
    assert all(p.exists() for p in keep)


class _KillsWorker:
    """Unpickling this in a pool worker ends that worker abruptly (like `kill -9` or the OOM killer)."""

    def __reduce__(self):
        return (os._exit, (137,))


def test_killed_worker_is_one_error_and_no_temp(tmp_path, faces):
    root = fx.make_folder(tmp_path / "data", faces, n_per_class=1)
    recs = list(read_dataset("folder", root))[:2]
    recs.insert(0, dataclasses.replace(recs[0], path=None, image=_KillsWorker(), source="killer"))
    out = tmp_path / "o.h5"
    with pytest.raises(FerdataError, match="worker"):
        ingest(recs, out, "folder", IngestConfig(size=64), workers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_writer_refuses_bad_size_without_leaving_a_temp(tmp_path):
    with pytest.raises(FerdataError, match="face size must be in"):
        FaceStoreWriter(tmp_path / "o.h5", 0, "x")
    assert list(tmp_path.iterdir()) == []


def test_sample_command(tmp_path):
    r = run("sample", "-o", tmp_path / "s")
    assert r.exit_code == 0, r.output
    with FaceStore(tmp_path / "s" / "faces.h5") as fs:
        assert len(fs) == 2 and sorted(fs.classes) == ["happiness", "neutral"]
    assert (tmp_path / "s" / "backgrounds" / "annotations" / "instances_sample.json").exists()
