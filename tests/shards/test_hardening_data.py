"""Issue 10, data paths: nothing lost, nothing silently wrong (shards, manifest, resume, LBP, workers)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from ferdata.cli import main
from ferdata.config import RenderConfig
from ferdata.errors import ShardError
from ferdata.features import add_lbp_to_h5, add_lbp_to_shards
from ferdata.render.run import render
from ferdata.shards.inspect import summarize, verify
from ferdata.shards.manifest import file_sha256, load_manifest, rewrite_shard_entry
from ferdata.shards.reader import read_images

SMALL = dict(per_face=24, shard_size=16, size=64)  # 2 faces -> 48 samples, 3 shards
CIRCLE, UNIFORM = "lbp/circle_P8_R1", "lbp/uniform_P8_R1"


@pytest.fixture(scope="module")
def rendered(sample_dir, tmp_path_factory):
    """One raw and one JPEG render of the sample (copied by each test that changes them)."""
    root = tmp_path_factory.mktemp("hardening")
    faces, bg = sample_dir / "faces.h5", sample_dir / "backgrounds"
    render(faces, bg, root / "raw", RenderConfig(**SMALL, encoding="raw"))
    render(faces, bg, root / "jpeg", RenderConfig(**SMALL, encoding="jpeg"))
    return root


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def _write_manifest(folder, m):
    (folder / "manifest.json").write_text(json.dumps(m))


def _lbp_in(path):
    with h5py.File(path, "r") as f:
        return sorted(f"lbp/{k}" for k in f["lbp"]) if "lbp" in f else []


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---- 1. two lbp writers on one folder ----------------------------------------------------

_SLOW_LBP = """
import shutil, sys, time
from pathlib import Path
folder, variant, me, other = sys.argv[1:]
real = shutil.copyfile
def slow_copy(a, b):  # widen the window between the copy and the rename
    real(a, b)
    time.sleep(0.5)
shutil.copyfile = slow_copy
from ferdata.features import add_lbp_to_shards
Path(folder, me).touch()
while not Path(folder, other).exists():  # start together
    time.sleep(0.01)
add_lbp_to_shards(folder, variant, 8, 1)
"""


@pytest.mark.slow
def test_two_lbp_runs_on_one_folder_keep_both_variants(rendered, tmp_path):
    """Two processes add different variants to one shard at the same moment: neither is lost."""
    folder = _copy(rendered / "raw", tmp_path / "f")
    m = _manifest(folder)  # one shard is enough
    m["shards"] = {"shard-000000.h5": m["shards"]["shard-000000.h5"]}
    _write_manifest(folder, m)
    procs = [subprocess.Popen([sys.executable, "-c", _SLOW_LBP, str(folder), v, f"ready-{v}", f"ready-{o}"])
             for v, o in (("circle", "uniform"), ("uniform", "circle"))]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert _lbp_in(folder / "shard-000000.h5") == [CIRCLE, UNIFORM]
    e = load_manifest(folder)["shards"]["shard-000000.h5"]
    assert e["lbp"] == [CIRCLE, UNIFORM] and e["sha256"] == file_sha256(folder / "shard-000000.h5")


# ---- 2. a corrupted shard is never re-hashed ---------------------------------------------

def test_lbp_leaves_a_corrupted_shard_untouched(rendered, tmp_path):
    folder = _copy(rendered / "raw", tmp_path / "f")
    p = folder / "shard-000001.h5"
    with h5py.File(p, "r") as f:
        off = f["image"].id.get_offset()
    data = bytearray(p.read_bytes())
    data[off + 1000] ^= 0xFF  # one image byte: HDF5 still reads it
    p.write_bytes(bytes(data))
    entry = _manifest(folder)["shards"][p.name]
    with pytest.raises(ShardError, match=r"shard-000001\.h5: sha256 differs from the manifest") as ei:
        add_lbp_to_shards(folder, "circle", 8, 1)
    assert p.read_bytes() == bytes(data)
    assert _manifest(folder)["shards"][p.name] == entry
    assert ei.value.result == {"shard-000000.h5": True, "shard-000002.h5": True}
    assert [n for n, _ in verify(folder)["problems"]] == ["shard-000001.h5"]
    r = CliRunner().invoke(main, ["lbp", str(folder), "--workers", "1"])
    assert r.exit_code == 1 and "Error: " in r.output and "shard-000001.h5" in r.output
    assert "Traceback" not in r.output


# ---- 3. the folder-level lbp list never lies ---------------------------------------------

def test_manifest_lbp_is_what_every_shard_has(sample_dir, tmp_path):
    faces, bg = sample_dir / "faces.h5", sample_dir / "backgrounds"
    cfg = RenderConfig(**SMALL)
    render(faces, bg, tmp_path, cfg, shards="0:1")
    add_lbp_to_shards(tmp_path, "circle", 8, 1)
    assert load_manifest(tmp_path)["lbp"] == [CIRCLE]
    render(faces, bg, tmp_path, cfg)  # two more shards, without LBP
    m = load_manifest(tmp_path)
    assert m["lbp"] == []
    assert {k: e["lbp"] for k, e in m["shards"].items()} == {
        "shard-000000.h5": [CIRCLE], "shard-000001.h5": [], "shard-000002.h5": []}
    assert verify(tmp_path)["problems"] == []
    assert add_lbp_to_shards(tmp_path, "circle", 8, 1) == {
        "shard-000000.h5": False, "shard-000001.h5": True, "shard-000002.h5": True}
    assert load_manifest(tmp_path)["lbp"] == [CIRCLE]
    # verify checks what the manifest claims, per shard and for the folder
    m = _manifest(tmp_path)
    m["shards"]["shard-000002.h5"]["lbp"].append(UNIFORM)
    m["lbp"].append(UNIFORM)
    _write_manifest(tmp_path, m)
    problems = verify(tmp_path)["problems"]
    assert any(n == "shard-000002.h5" and UNIFORM in why for n, why in problems)
    assert any(n == "manifest.json" and UNIFORM in why for n, why in problems)


def test_lbp_on_one_shard_file_keeps_its_manifest_entry(rendered, tmp_path):
    folder = _copy(rendered / "raw", tmp_path / "f")
    r = CliRunner().invoke(main, ["lbp", str(folder / "shard-000002.h5"), "--workers", "1"])
    assert r.exit_code == 0, r.output
    e = load_manifest(folder)["shards"]["shard-000002.h5"]
    assert e["lbp"] == [CIRCLE] and e["sha256"] == file_sha256(folder / "shard-000002.h5")
    assert verify(folder)["problems"] == []


# ---- 5. one bad shard with workers -------------------------------------------------------

def _corrupt_jpeg_at_source(folder, shard="shard-000001.h5", j=5):
    """Garble sample j's JPEG and re-list the shard: bad data the manifest agrees with."""
    with h5py.File(folder / shard, "a") as f:
        off = f["image_offsets"][:]
        f["image"][off[j]:off[j] + 60] = 0
    rewrite_shard_entry(folder, shard)


def test_lbp_workers_one_bad_shard_others_recorded(rendered, tmp_path):
    folder = _copy(rendered / "jpeg", tmp_path / "f")
    _corrupt_jpeg_at_source(folder)
    r = CliRunner().invoke(main, ["lbp", str(folder), "--workers", "2"])
    assert r.exit_code == 1, r.output
    err = [line for line in r.output.splitlines() if line.startswith("Error: ")]
    assert len(err) == 1 and "shard-000001.h5: sample 5: corrupt JPEG" in err[0]
    assert "added to 2 shards" in r.output and "Traceback" not in r.output
    m = load_manifest(folder)
    for name in ("shard-000000.h5", "shard-000002.h5"):
        assert m["shards"][name]["sha256"] == file_sha256(folder / name)
        assert m["shards"][name]["lbp"] == [CIRCLE] == _lbp_in(folder / name)
    assert m["shards"]["shard-000001.h5"]["lbp"] == [] and m["lbp"] == []
    assert verify(folder)["problems"] == [] and not list(folder.glob("*.tmp-*"))


def test_corrupt_or_truncated_jpeg_names_file_and_sample(rendered, tmp_path):
    folder = _copy(rendered / "jpeg", tmp_path / "f")
    with h5py.File(folder / "shard-000000.h5", "a") as f:
        off = f["image_offsets"][:]
        f["image"][off[4] - 30:off[4]] = 0  # the end (EOI) of sample 3
    with h5py.File(folder / "shard-000000.h5", "r") as f:
        np.testing.assert_array_equal(read_images(f, 0, 3), read_images(f, 0, 3))
        with pytest.raises(ShardError, match=r"shard-000000\.h5: sample 3: corrupt JPEG"):
            read_images(f, 2, 6)


# ---- manifest entries without bytes --------------------------------------------------------

def test_manifest_entry_without_bytes_is_a_clean_problem(rendered, tmp_path):
    folder = _copy(rendered / "raw", tmp_path / "f")
    m = _manifest(folder)
    del m["shards"]["shard-000001.h5"]["bytes"]
    _write_manifest(folder, m)
    res = verify(folder)
    assert res["ok"] == 2 and res["problems"][0][0] == "shard-000001.h5" and "'bytes'" in res["problems"][0][1]
    with pytest.raises(ShardError, match="shard-000001.h5.*'bytes'"):
        summarize(folder)
    with pytest.raises(ShardError, match="shard-000001.h5.*'bytes'") as ei:
        add_lbp_to_shards(folder, "circle", 8, 1)
    assert ei.value.result == {"shard-000000.h5": True, "shard-000002.h5": True}
    for cmd in (["verify"], ["inspect"], ["lbp", "--workers", "1"]):
        r = CliRunner().invoke(main, [cmd[0], str(folder), *cmd[1:]])
        assert r.exit_code == 1 and "Traceback" not in r.output and "'bytes'" in r.output, (cmd, r.output)


# ---- 6. resume identity is content, not spelling ------------------------------------------

def test_resume_identity_is_content_not_path_spelling(sample_dir, tmp_path, monkeypatch):
    faces, bg = sample_dir / "faces.h5", sample_dir / "backgrounds"
    cfg = RenderConfig(**SMALL)
    out = tmp_path / "out"
    render(faces.resolve(), bg.resolve(), out, cfg, shards="0:1")
    monkeypatch.chdir(sample_dir)  # another cwd, relative paths, a trailing slash
    r = render(Path("faces.h5"), "backgrounds/", out, cfg, shards="1:2")
    assert r["shards_made"] == 1 and r["shards_skipped"] == 0
    copied = _copy(out, tmp_path / "copied")  # a copied run folder
    r = render(faces, bg, copied, cfg)
    assert (r["shards_made"], r["shards_skipped"]) == (1, 2)
    # adding LBP to the face store changes its file but not what the render depends on
    faces2 = shutil.copy(faces, tmp_path / "faces2.h5")
    render(faces2, bg, tmp_path / "o2", cfg, shards="0:1")
    assert add_lbp_to_h5(faces2, "uniform", 8, 1)
    r = render(faces2, bg, tmp_path / "o2", cfg)
    assert (r["shards_made"], r["shards_skipped"]) == (2, 1)


def test_different_configuration_names_the_keys(sample_dir, tmp_path):
    faces, bg = sample_dir / "faces.h5", sample_dir / "backgrounds"
    render(faces, bg, tmp_path, RenderConfig(**SMALL), shards="0:1")
    with pytest.raises(ShardError, match=r"different configuration \(config\.noise \(folder 0\.05, now 0\.1\); "
                                         r"config\.seed \(folder 0, now 3\)\)"):
        render(faces, bg, tmp_path, RenderConfig(**SMALL, seed=3, noise=0.1))
    with h5py.File(shutil.copy(faces, tmp_path / "other.h5"), "a") as f:
        f["label"][0] = 3
    with pytest.raises(ShardError, match=r"face_store_sha256 \(folder"):
        render(tmp_path / "other.h5", bg, tmp_path, RenderConfig(**SMALL))


def test_folder_from_an_older_ferdata_resumes_and_is_upgraded(sample_dir, tmp_path):
    faces, bg = sample_dir / "faces.h5", sample_dir / "backgrounds"
    render(faces, bg, tmp_path, RenderConfig(**SMALL), shards="0:1")
    m = _manifest(tmp_path)  # as written before content identities
    del m["identity"]
    m["config_hash"] = "0123456789abcdef"
    m["face_store"] = {"path": "faces.h5", "sha256": file_sha256(faces), "faces": 2}
    _write_manifest(tmp_path, m)
    r = render(faces, bg, tmp_path, RenderConfig(**SMALL))
    assert (r["shards_made"], r["shards_skipped"]) == (2, 1)
    assert "identity" in _manifest(tmp_path)


# ---- 7. several machines, temps, atomic JSON ------------------------------------------------

def test_temps_name_the_host_and_only_own_dead_ones_are_removed(rendered, tmp_path):
    from ferdata.atomic import host_tag, parse_tmp, tmp_path as temp_name

    folder = _copy(rendered / "raw", tmp_path / "f")
    me, dead = host_tag(), _dead_pid()
    assert parse_tmp(temp_name(folder / "shard-000001.h5").name) == ("shard-000001.h5", me, os.getpid())
    names = {"own_dead": f"shard-000009.h5.tmp-{me}-{dead}", "own_live": f"shard-000009.h5.tmp-{me}-{os.getppid()}",
             "other_host": f"shard-000009.h5.tmp-otherhost-{dead}", "no_host": f"shard-000009.h5.tmp-{dead}"}
    for n in names.values():
        (folder / n).write_bytes(b"x" * 64)
    reported = {n for n, _ in verify(folder)["problems"]}
    assert reported == set(names.values())
    m = load_manifest(folder)
    render(m["face_store"]["path"], m["backgrounds"]["path"], folder, RenderConfig(**SMALL, encoding="raw"))
    left = {p.name for p in folder.glob("*.tmp-*")}
    assert left == {names["own_live"], names["other_host"], names["no_host"]}


def test_shard_hash_is_taken_from_the_temp_before_the_rename(sample_dir, tmp_path, monkeypatch):
    import ferdata.shards.writer as w
    hashed = []
    real = w.file_sha256

    def spy(path):
        hashed.append(Path(path).name)
        return real(path)
    monkeypatch.setattr(w, "file_sha256", spy)
    render(sample_dir / "faces.h5", sample_dir / "backgrounds", tmp_path, RenderConfig(**SMALL), shards="0:1")
    assert len(hashed) == 1 and ".tmp-" in hashed[0]
    assert load_manifest(tmp_path)["shards"]["shard-000000.h5"]["sha256"] == real(tmp_path / "shard-000000.h5")


def test_killed_lbp_temps_are_reported_then_cleaned(rendered, tmp_path):
    from ferdata.atomic import host_tag

    folder = _copy(rendered / "raw", tmp_path / "f")
    stale = folder / f"shard-000001.h5.tmp-{host_tag()}-{_dead_pid()}"
    shutil.copyfile(folder / "shard-000001.h5", stale)  # what a killed `ferdata lbp` leaves
    assert [n for n, _ in verify(folder)["problems"]] == [stale.name]
    r = CliRunner().invoke(main, ["verify", str(folder)])
    assert r.exit_code == 1 and stale.name in r.output
    add_lbp_to_shards(folder, "circle", 8, 1)
    assert not stale.exists() and verify(folder)["problems"] == []
