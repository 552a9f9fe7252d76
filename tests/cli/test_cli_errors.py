"""Bad input at the CLI boundary: one `Error:` line naming the file/option and the problem."""
import json
import shutil

import h5py
import pytest
from click.testing import CliRunner

from ferdata.render.backgrounds import BackgroundSource
from ferdata.cli import main
from ferdata.config import IngestConfig, RenderConfig, from_dict
from ferdata.train.config import TrainConfig, check_model_name
from ferdata.errors import FerdataError
from ferdata.typed import coerce_fields


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(r, *needles, codes=(1,)):
    """exit 1 (or a click usage error where ``codes`` allows 2), one `Error:` line containing
    every needle, no traceback."""
    assert r.exit_code in codes, (r.exit_code, r.output)
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error: ")]
    assert len(errors) == 1, r.output
    for n in needles:
        assert str(n) in errors[0], (n, errors[0])
    assert "Traceback" not in r.output
    return errors[0]


# ---------------------------------------------------------------- the error handler

def test_unexpected_exception_is_one_line_with_debug_hint(sample_dir, tmp_path, monkeypatch):
    import ferdata.viz

    def boom(*a, **k):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(ferdata.viz, "contact_sheet", boom)
    r = invoke("show", sample_dir / "faces.h5", "-o", tmp_path / "a.png")
    line = one_error_line(r, "RuntimeError: boom second line", "--debug")
    assert line.startswith("Error: RuntimeError")
    r = invoke("--debug", "show", sample_dir / "faces.h5", "-o", tmp_path / "a.png")
    assert isinstance(r.exception, RuntimeError)  # --debug: the exception propagates


# ---------------------------------------------------------------- face store validation

@pytest.mark.parametrize("damage, needle", [
    ("schema", "schema_version 2 is not supported"),
    ("label", "missing label"),
    ("classes", "missing attr classes"),
    ("shape", "mask has shape"),
])
def test_damaged_face_store_names_file(sample_dir, tmp_path, damage, needle):
    p = tmp_path / f"{damage}.h5"
    shutil.copy(sample_dir / "faces.h5", p)
    with h5py.File(p, "a") as f:
        if damage == "schema":
            f.attrs["schema_version"] = 2
        elif damage == "label":
            del f["label"]
        elif damage == "classes":
            del f.attrs["classes"]
        else:
            del f["mask"]
            f["mask"] = [[0]]
    for cmd in ("inspect", "show"):
        extra = ["-o", tmp_path / "s.png"] if cmd == "show" else []
        one_error_line(invoke(cmd, p, *extra), p, needle)
    assert not (tmp_path / "s.png").exists()


# ---------------------------------------------------------------- typed configs

@pytest.mark.parametrize("cls, data, needle", [
    (RenderConfig, {"size": "abc"}, "size must be an integer, got 'abc'"),
    (RenderConfig, {"per_face": 1.5}, "per_face must be an integer, got 1.5"),
    (RenderConfig, {"gray": "maybe"}, "gray must be true or false"),
    (RenderConfig, {"noise": "nan"}, "noise must be a finite number"),
    (RenderConfig, {"noise": [1]}, "noise must be a number"),
    (RenderConfig, {"size": None}, "size must be an integer"),
    (RenderConfig, {"sizes": 3}, "unknown key(s) sizes"),
    (TrainConfig, {"epochs": "abc"}, "epochs must be an integer, got 'abc'"),
    (TrainConfig, {"model_kwargs": 3}, "model_kwargs must be a table"),
    (IngestConfig, {"size": "big"}, "size must be an integer, got 'big'"),
])
def test_typed_config_errors_name_source_key_value(cls, data, needle):
    with pytest.raises(FerdataError) as e:
        from_dict(cls, data, "recipe.toml")
    assert str(e.value).startswith("recipe.toml: ") and needle in str(e.value)


def test_typed_config_coerces_what_fits():
    d = coerce_fields(RenderConfig, {"size": "64", "per_face": 2.0, "noise": 0, "gray": "true",
                                     "erode": "none", "exclude_categories": "person,1"}, "--set")
    assert d == {"size": 64, "per_face": 2, "noise": 0.0, "gray": True, "erode": None,
                 "exclude_categories": ("person", 1)}
    assert all(type(v) is t for v, t in [(d["size"], int), (d["noise"], float)])
    assert TrainConfig(noise=[0.1, 0.2]).noise == (0.1, 0.2)  # construction coerces too
    assert IngestConfig(size=None).size is None


@pytest.mark.parametrize("cls, kw, needle", [
    (RenderConfig, {"size": 0}, "size must be in [16, 4096], got 0"),
    (RenderConfig, {"size": 100000}, "size must be in [16, 4096]"),
    (RenderConfig, {"per_face": 0}, "per_face must be >= 1"),
    (RenderConfig, {"seed": -1}, "seed must be >= 0, got -1"),
    (RenderConfig, {"noise": -1}, "noise must be in [0.0, 1.0]"),
    (RenderConfig, {"gamma": 1.0}, "gamma must be in"),
    (RenderConfig, {"lum_min": 2.0}, "lum_min must be <= lum_max"),
    (RenderConfig, {"blend": "soft"}, "blend must be one of alpha|poisson|hard"),
    (IngestConfig, {"size": 8}, "size must be in [16, 4096], got 8"),
    (IngestConfig, {"upsample": 9}, "upsample must be in [0, 4]"),
    (IngestConfig, {"on_error": "ignore"}, "on_error must be one of skip|raise"),
])
def test_config_ranges(cls, kw, needle):
    with pytest.raises(FerdataError, match="config: ") as e:
        cls(**kw).validate()
    assert needle in str(e.value)


def test_model_name_checked_against_registry():
    check_model_name("preactresnet18")
    with pytest.raises(FerdataError, match="'nosuchmodel' is not a registered model.*preactresnet18"):
        check_model_name("nosuchmodel")


@pytest.mark.parametrize("args, needles", [
    (["--set", "size=abc"], ("size", "'abc'")),
    (["--set", "per_face=1.5"], ("per_face", "1.5")),
    (["--seed", "-1"], ("seed", "-1")),
    (["--set", "noise=-1"], ("noise", "-1")),
    (["--size", "100000"], ("size", "100000", "4096")),
    (["--config", "BIG"], ("big.toml", "size", "'big'")),
])
def test_render_bad_values_are_one_line(sample_dir, tmp_path, args, needles):
    (tmp_path / "big.toml").write_text('size = "big"\n')
    args = [str(tmp_path / "big.toml") if a == "BIG" else a for a in args]
    out = tmp_path / "r"
    r = invoke("render", sample_dir / "faces.h5", "--backgrounds", sample_dir / "backgrounds", "-o", out,
               "--per-face", 2, *args)
    one_error_line(r, *needles, codes=(1, 2))  # a usage error (2) where click checks the option
    assert not out.exists() or not list(out.glob("shard-*"))


def test_train_bad_epochs_is_one_line(tmp_path):
    r = invoke("train", "--set", "epochs=abc", "--set", f"data={tmp_path}", "-o", tmp_path / "run")
    one_error_line(r, "epochs must be an integer, got 'abc'")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- option ranges

@pytest.mark.parametrize("args", [
    ["show", "FACES", "--n", "0", "-o", "OUT/a.png"],
    ["show", "FACES", "--n", "-4", "-o", "OUT/a.png"],
    ["show", "FACES", "--tile", "0", "-o", "OUT/a.png"],
    ["show", "FACES", "-o", "OUT/x.jpgx"],
    ["show", "FACES", "-o", "OUT/noext"],
    ["ingest", "folder", "OUT", "-o", "OUT/a.h5", "--size", "0"],
    ["ingest", "folder", "OUT", "-o", "OUT/a.h5", "--size", "100000"],
    ["ingest", "folder", "OUT", "-o", "OUT/a.h5", "--workers", "0"],
    ["sample", "-o", "OUT/s", "--size", "0"],
])
def test_bad_option_values_are_usage_errors(sample_dir, tmp_path, args):
    args = [a.replace("FACES", str(sample_dir / "faces.h5")).replace("OUT", str(tmp_path)) for a in args]
    r = invoke(*args)
    assert r.exit_code == 2, r.output
    assert "Error: Invalid value" in r.output and "Traceback" not in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, no temp


def test_show_writes_other_formats_atomically(sample_dir, tmp_path):
    r = invoke("show", sample_dir / "faces.h5", "-o", tmp_path / "a.jpg", "--tile", 64)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg"]


# ---------------------------------------------------------------- COCO backgrounds

def _coco(sample_dir, tmp_path, edit):
    root = tmp_path / "bg"
    shutil.copytree(sample_dir / "backgrounds", root)
    ann = root / "annotations" / "instances_sample.json"
    d = json.loads(ann.read_text())
    edit(d)
    ann.write_text(json.dumps(d))
    return root, ann


def test_coco_image_without_file_name(sample_dir, tmp_path):
    root, ann = _coco(sample_dir, tmp_path, lambda d: d["images"][2].pop("file_name"))
    with pytest.raises(FerdataError, match=f"{ann}: image id 3 has no file_name"):
        BackgroundSource.from_coco(root)


def test_coco_without_annotations_does_not_drop_the_person_filter(sample_dir, tmp_path):
    root, ann = _coco(sample_dir, tmp_path, lambda d: d.pop("annotations"))
    with pytest.raises(FerdataError, match="has no 'annotations' list.*exclude_categories=\\[\\]"):
        BackgroundSource.from_coco(root)
    # filtering turned off explicitly: every image, including the one with a person
    assert len(BackgroundSource.from_coco(root, exclude_categories=())) == 15
    # with annotations the person image is excluded
    assert len(BackgroundSource.from_coco(sample_dir / "backgrounds")) == 14


def test_unreadable_ingest_report_names_the_file(sample_dir, tmp_path):
    store = tmp_path / "f.h5"
    shutil.copy(sample_dir / "faces.h5", store)
    (tmp_path / "f_ingest_report.json").write_text("{bad")
    one_error_line(invoke("inspect", store), "f_ingest_report.json: unreadable ingest report")


def test_show_onto_a_full_disk_names_the_file_and_leaves_nothing(sample_dir, tmp_path, monkeypatch):
    import os

    def enospc(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", enospc)
    out = tmp_path / "a.png"
    one_error_line(invoke("show", sample_dir / "faces.h5", "-o", out), f"{out}: cannot write the image",
                   "No space left on device")
    assert list(tmp_path.iterdir()) == []
