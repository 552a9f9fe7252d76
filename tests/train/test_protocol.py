"""The experimental protocol: three disjoint sides, validation-only model selection, composition."""
import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from fixtures import train_fixtures as tf
from ferdata.config import RenderConfig
from ferdata.train.config import TrainConfig
from ferdata.errors import FerdataError
from ferdata.labels import CLASS_INDEX
from ferdata.train import fit, n_folds
from ferdata.train.split import Side, Split, resolve_split

FAST = dict(model="preactresnet18", model_kwargs=tf.TINY_MODEL, batch_size=16, lr=3e-3, num_workers=0,
            eval_batch_size=128)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """24 subjects × 3 classes × 2 faces, no official splits."""
    return tf.make_store(tmp_path_factory.mktemp("st") / "faces.h5", n_subjects=24)


def _subjects(path):
    with h5py.File(path, "r") as f:
        return np.asarray([s.decode() if isinstance(s, bytes) else s for s in f["subject"][:]])


@pytest.mark.parametrize("folding", [{"folds": 4}, {"subjects_per_fold": 10}])
def test_kfold_sides_pairwise_disjoint_in_every_fold(store, folding):
    subj = _subjects(store)
    k = n_folds(TrainConfig(faces=str(store), **folding))
    assert k == (4 if "folds" in folding else 3)          # 24 subjects, 10 per fold -> 10, 10, 4
    tested = []
    for fold in range(k):
        sp = resolve_split(TrainConfig(faces=str(store), fold=fold, val_subjects=2, **folding))
        sides = [set(subj[s.faces]) for s in sp.sides()]
        assert all(sides) and not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
        assert len(sides[1]) == 2 and sum(len(s) for s in sp.sides()) == len(subj)
        assert json.dumps(sp.describe())  # JSON-able, with the subject lists
        assert sorted(sp.describe()["test_subjects"]) == sorted(sides[2])
        tested += sp.test.faces.tolist()
    assert sorted(tested) == list(range(len(subj)))       # every face tested exactly once


def test_official_sides_and_overlap_is_an_error(tmp_path):
    names = ("train", "train", "val", "test")
    p = tf.make_store(tmp_path / "fer.h5", n_subjects=8, splits=lambda s: names[s % 4])
    sp = resolve_split(TrainConfig(faces=str(p), protocol="official"))
    with h5py.File(p, "r") as f:
        splits = np.asarray([s.decode() if isinstance(s, bytes) else s for s in f["split"][:]])
    for side in sp.sides():
        assert set(splits[side.faces]) == {side.name}
    assert sp.describe()["val_split"] == "val" and sp.describe()["test_faces"] == len(sp.test)
    bad = Split("official", sp.train, Side("val", sp.train.faces[:1]), sp.test)
    with pytest.raises(FerdataError, match="overlap"):
        bad.check()
    p2 = tf.make_store(tmp_path / "noval.h5", n_subjects=4, splits=lambda s: "train" if s < 3 else "test")
    with pytest.raises(FerdataError, match="'val' split"):
        resolve_split(TrainConfig(faces=str(p2), protocol="official"))


def test_kfold_errors_instead_of_silent_fallbacks(store):
    with pytest.raises(FerdataError, match="folds/subjects_per_fold"):
        TrainConfig(faces=str(store), folds=3, subjects_per_fold=10).validate()
    with pytest.raises(FerdataError, match="leave no training subject"):
        resolve_split(TrainConfig(faces=str(store), folds=2, val_subjects=12))
    with pytest.raises(FerdataError, match="out of range"):
        resolve_split(TrainConfig(faces=str(store), folds=4, fold=4))
    with pytest.raises(FerdataError, match="select_metric"):
        TrainConfig(select_metric="test_acc").validate()


def test_composition_neutral_subjects_intensity_classes(tmp_path):
    p = tf.make_store(tmp_path / "ck.h5", n_subjects=10, per_class=3)
    sp = resolve_split(TrainConfig(faces=str(p), folds=2, neutral_subjects=4, seed=3))
    comp = sp.composition["per_class"]
    assert comp == {"neutral": 4, "happiness": 30, "sadness": 30}
    with h5py.File(p, "r") as f:
        src = np.asarray([s.decode() for s in f["source"][:]])
        lab = f["label"][:]
    kept = np.concatenate([s.faces for s in sp.sides()])
    neutral = kept[lab[kept] == CLASS_INDEX["neutral"]]
    assert all(src[i].endswith("neutral_0.png") for i in neutral)    # the first frame of each subject
    other = resolve_split(TrainConfig(faces=str(p), folds=2, neutral_subjects=4, seed=4))
    kept2 = np.concatenate([s.faces for s in other.sides()])
    assert set(neutral) != set(kept2[lab[kept2] == CLASS_INDEX["neutral"]])  # seeded choice
    sub = resolve_split(TrainConfig(faces=str(p), folds=2, classes=["happiness", "sadness"]))
    assert set(sub.composition["per_class"]) == {"happiness", "sadness"}
    with pytest.raises(FerdataError, match="contempt"):
        resolve_split(TrainConfig(faces=str(p), folds=2, classes=["contempt"]))
    bu = tf.make_store(tmp_path / "bu.h5", n_subjects=4, per_class=4, classes=("neutral", "happiness", "anger"),
                       dataset="bu3dfe", source_fmt="{subject}/F{ci}00{k}_XX{k}_F2D.bmp")
    with h5py.File(bu, "a") as f:  # BU-3DFE names: expression code + intensity (NE00, HA01..04)
        codes = {CLASS_INDEX["neutral"]: "NE", CLASS_INDEX["happiness"]: "HA", CLASS_INDEX["anger"]: "AN"}
        names = [f"F{int(s[1:]):04d}_{codes[int(l)]}{0 if codes[int(l)] == 'NE' else k % 4 + 1:02d}WH_F2D.bmp"
                 for k, (s, l) in enumerate(zip([x.decode() for x in f["subject"][:]], f["label"][:]))]
        f["source"][:] = names
    sp = resolve_split(TrainConfig(faces=str(bu), folds=2, val_subjects=1, intensity=4))
    assert sp.composition["per_class"] == {"neutral": 4, "happiness": 4, "anger": 4}
    with pytest.raises(FerdataError, match="BU-3DFE file names"):
        resolve_split(TrainConfig(faces=str(p), folds=2, intensity=4))


@pytest.fixture(scope="module")
def renders(store, sample_dir, tmp_path_factory):
    from ferdata.render.run import render
    out = tmp_path_factory.mktemp("r") / "shards"
    render(store, sample_dir / "backgrounds", out, RenderConfig(size=32, per_face=2, shard_size=64), workers=1)
    return out


def test_kfold_renders_never_render_a_test_or_val_subject(store, renders, tmp_path, monkeypatch):
    import ferdata.torch as ft
    from ferdata.train.data import build
    from ferdata.train.models import model_inputs
    seen = {}
    for name in ("ShardIterableDataset", "ShardDataset"):
        cls = getattr(ft, name)

        def spy(*a, _cls=cls, _name=name, **kw):
            ds = _cls(*a, **kw)
            seen.setdefault(_name, []).append(np.asarray(ds.select_spec.face_indices))
            return ds
        monkeypatch.setattr(ft, name, spy)
    cfg = TrainConfig(faces=str(store), data=str(renders), folds=4, fold=2, val_subjects=2, eval_on="renders",
                      **FAST)
    data = build(cfg, tmp_path, model_inputs("preactresnet18", **tf.TINY_MODEL))
    sp, subj = data.split, _subjects(store)
    train_faces, (val_faces, test_faces) = seen["ShardIterableDataset"][0], seen["ShardDataset"]
    assert set(subj[train_faces]) == set(sp.train.subjects)
    assert set(subj[val_faces]) == set(sp.val.subjects) and set(subj[test_faces]) == set(sp.test.subjects)
    n = sum(int(b["label"].shape[0]) for b in data.train_loader)
    assert n == 2 * len(sp.train) < 2 * len(subj)          # renders of the training faces only
    assert len(data.val_loader.dataset) == 2 * len(sp.val) and len(data.test_loader.dataset) == 2 * len(sp.test)
    bad = tf.make_store(tmp_path / "other.h5", n_subjects=5)
    with pytest.raises(FerdataError, match="not the face store"):
        build(TrainConfig(faces=str(bad), data=str(renders), folds=2, **FAST), tmp_path / "b",
              model_inputs("preactresnet18", **tf.TINY_MODEL))


def _poisoned_copy(store, dst, test_faces):
    shutil.copy(store, dst)
    with h5py.File(dst, "a") as f:
        lab = f["label"][:]
        rot = {CLASS_INDEX["neutral"]: CLASS_INDEX["happiness"], CLASS_INDEX["happiness"]: CLASS_INDEX["sadness"],
               CLASS_INDEX["sadness"]: CLASS_INDEX["neutral"]}
        lab[test_faces] = [rot[int(v)] for v in lab[test_faces]]
        f["label"][:] = lab
    return dst


def _run_keys(path):
    drop = ("seconds", "samples_per_s", "data_wait_fraction")
    return [{k: v for k, v in json.loads(line).items() if k not in drop}
            for line in (path / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def faces_runs(store, tmp_path_factory):
    """The same faces-trained run on the store and on a copy whose TEST labels are poisoned."""
    base = tmp_path_factory.mktemp("poison")
    cfg = dict(folds=4, fold=1, val_subjects=3, train_on="faces", augment="seed004", epochs=5,
               scheduler="plateau", plateau_patience=0, plateau_factor=0.5, early_stopping=2,
               **{**FAST, "batch_size": 24})
    sp = resolve_split(TrainConfig(faces=str(store), **cfg))
    poisoned = _poisoned_copy(store, base / "poisoned.h5", sp.test.faces)
    res = {}
    for name, faces in (("clean", store), ("poisoned", poisoned)):
        torch.manual_seed(0)
        res[name] = fit(TrainConfig(faces=str(faces), **cfg), base / name)
    return base, res, cfg


def test_poisoned_test_labels_change_nothing_but_the_test_score(faces_runs):
    base, res, _ = faces_runs
    a, b = _run_keys(base / "clean"), _run_keys(base / "poisoned")
    assert a == b                                   # train/val metrics, lr schedule, epochs run
    assert [r["lr"] for r in a] == [r["lr"] for r in b]
    # the schedule and early stopping did act (val F1 stops improving on this easy fixture)
    assert len({r["lr"] for r in a}) > 1 and res["clean"]["epochs_run"] < 5
    assert res["clean"]["best_epoch"] == res["poisoned"]["best_epoch"]
    assert res["clean"]["epochs_run"] == res["poisoned"]["epochs_run"]
    wa = torch.load(base / "clean" / "best.pt", weights_only=False)["model"]
    wb = torch.load(base / "poisoned" / "best.pt", weights_only=False)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert res["clean"]["val"] == res["poisoned"]["val"]
    assert res["clean"]["test"]["confusion_matrix"] != res["poisoned"]["test"]["confusion_matrix"]


def test_metrics_have_no_test_key_and_eval_json_contract(faces_runs):
    base, res, cfg = faces_runs
    recs = _run_keys(base / "clean")
    assert recs and all(not any(k.startswith("test") for k in r) for r in recs)
    assert all("val_macro_f1" in r and "val_acc" in r for r in recs)
    ev = json.loads((base / "clean" / "eval.json").read_text())
    assert set(ev) >= {"val", "test", "best_epoch", "epochs_run", "parameters"}
    for side in ("val", "test"):
        assert set(ev[side]) >= {"accuracy", "per_class", "macro", "confusion_matrix", "classes"}
    best = max(recs, key=lambda r: (r["val_macro_f1"], -r["epoch"]))  # ties -> earliest epoch
    assert ev["best_epoch"] == best["epoch"]
    conf = json.loads((base / "clean" / "config.json").read_text())
    assert set(conf["split"]) >= {"train_subjects", "val_subjects", "test_subjects"}
    assert ev["test"]["n"] == sum(1 for _ in conf["split"]["test_subjects"]) * 6


def test_train_on_faces_learns(faces_runs):
    base, res, _ = faces_runs
    recs = _run_keys(base / "clean")
    assert recs[-1]["train_loss"] < recs[0]["train_loss"] * 0.8
    assert res["clean"]["val"]["accuracy"] > 0.5          # 3 classes: chance is 1/3


def test_eval_checkpoint_equals_the_runs_test_numbers(faces_runs, store, tmp_path):
    from ferdata.train.evaluate import evaluate_checkpoint
    base, res, _ = faces_runs
    conf = json.loads((base / "clean" / "config.json").read_text())
    ev = evaluate_checkpoint(base / "clean" / "best.pt", store, tmp_path, subjects=conf["split"]["test_subjects"])
    assert ev["eval"]["confusion_matrix"] == res["clean"]["test"]["confusion_matrix"]
    assert ev["eval"]["accuracy"] == res["clean"]["test"]["accuracy"]


def test_run_folder_is_not_overwritten_without_overwrite(store, tmp_path):
    (tmp_path / "last.pt").write_bytes(b"x")
    cfg = TrainConfig(faces=str(store), folds=4, train_on="faces", epochs=1, **FAST)
    with pytest.raises(FerdataError, match="--overwrite"):
        fit(cfg, tmp_path)
    assert (tmp_path / "last.pt").read_bytes() == b"x"     # nothing lost


def test_feratt_attention_target_is_the_clean_face(store, renders):
    """The target is the face on black in the render's pose: independent of the background and of the
    photometric draws, zero outside the warped mask, and not the noisy input under the mask."""
    from ferdata.render.compose import compose, prepare_face
    from ferdata.render.params import P, sample_params
    from ferdata.torch import ShardDataset
    from ferdata.train.clean import RenderClean, clean_render
    with h5py.File(store, "r") as f:
        img, m, lm = f["image"][5], f["mask"][5], f["landmarks"][5]
    cfg = RenderConfig(size=32).resolved()
    p1 = sample_params(np.random.default_rng(1), cfg)
    p2 = sample_params(np.random.default_rng(2), cfg)
    p2[:P["p3y"] + 1] = p1[:P["p3y"] + 1]                  # same geometry, other photometry
    bg1 = np.random.default_rng(3).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    bg2 = np.full((40, 40, 3), 200, np.uint8)
    face = prepare_face(img, m, lm, 32)
    r1, r2 = compose(face, bg1, p1.copy(), cfg), compose(face, bg2, p2.copy(), cfg)
    assert not np.array_equal(r1["image"], r2["image"])
    c1 = clean_render(img, m, lm, r1["params"], 32, cfg.__dict__)
    c2 = clean_render(img, m, lm, r2["params"], 32, cfg.__dict__)
    assert c1.any() and not c1[~r1["mask"]].any()          # black outside the warped face
    assert not np.array_equal(c1[r1["mask"]], r1["image"][r1["mask"]])   # not the noisy input
    # exact: inside the face it is the render replayed with photometric augmentation off
    from ferdata.faces.masks import soft_alpha
    alpha = soft_alpha(r1["mask"], float(p1[P["erode"]]), float(p1[P["feather"]]))
    quiet = compose(face, bg1, p1.copy(), cfg, photometric_on=False)["image"]
    inner = alpha > 0.999
    assert inner.sum() > 50
    assert np.abs(c1[inner].astype(int) - quiet[inner].astype(int)).max() <= 1
    # the same face, pose and lightness on another background: the same target
    if r1["params"][P["lum_w"]] == r2["params"][P["lum_w"]]:
        assert np.array_equal(c1, c2)
    ds = ShardDataset(renders, fields=("image", "label", "params", "face_index"), transform=RenderClean(store, 32))
    s = ds[3]
    assert "params" not in s and s["clean"].shape == s["image"].shape


def test_augmentation_presets():
    from ferdata.train.augment import Augmenter, load_size
    assert load_size("seed002", (144, 112)) == (160, 125) and load_size("seed001", (48, 48)) == (48, 48)
    a = Augmenter("seed002", (144, 112), seed=0)
    x = torch.arange(2 * 160 * 125, dtype=torch.float32).reshape(2, 1, 160, 125)
    out = a({"image": x.clone(), "clean": x.clone()}, train=True)
    assert out["image"].shape == (2, 1, 144, 112) and torch.equal(out["image"], out["clean"])
    assert torch.equal(a({"image": x.clone()}, train=False)["image"], x[:, :, 8:152, 6:118])   # centre crop
    g = Augmenter("seed001", (32, 32), seed=0)
    img = torch.rand(4, 1, 32, 32)
    o = g({"image": img.clone(), "clean": img.clone()}, train=True)
    assert not torch.allclose(o["image"], img)
    torch.testing.assert_close(o["image"][..., 12:20, 12:20], o["clean"][..., 12:20, 12:20])
    assert torch.equal(g({"image": img.clone()}, train=False)["image"], img)
    g.set_epoch(1)
    o1 = g({"image": img.clone()}, train=True)["image"]
    g.set_epoch(1)
    assert torch.equal(g({"image": img.clone()}, train=True)["image"], o1)   # a function of (seed, epoch)


@pytest.mark.slow
def test_train_on_both_mixes_renders_and_faces_with_clean_targets(store, renders, tmp_path):
    kw = {"input_size": 32, "att_width": 4, "width": 8, "embedding_dim": 8, "ft_filters": 8, "rec_filters": 8}
    cfg = TrainConfig(faces=str(store), data=str(renders), folds=4, val_subjects=2, train_on="both",
                      augment="seed001", **{**FAST, "model": "feratt_rep_cls", "model_kwargs": kw, "epochs": 1})
    res = fit(cfg, tmp_path)
    rec = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert np.isfinite(rec["train_att"]) and rec["train_att"] > 0
    conf = json.loads((tmp_path / "config.json").read_text())
    n_train = conf["split"]["train_faces"]
    assert conf["resolved"]["data"]["train_n"] == n_train * 3          # 2 renders + the real face, per face
    assert res["test"]["n"] == conf["split"]["test_faces"]


def test_split_and_n_folds_do_not_import_torch(store):
    import subprocess
    import sys
    code = ("import sys; from ferdata.train.config import TrainConfig; from ferdata.train import n_folds; "
            f"print(n_folds(TrainConfig(faces={str(store)!r}, subjects_per_fold=10)), 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["3", "False"], r.stderr



def test_feratt_released_target_is_the_warped_face_before_luminance(store):
    """att_target = released: the released code's x_org — the face warped into the render's pose
    under its hard mask, with no luminance matching and no soft alpha."""
    import cv2

    from ferdata.render.compose import geometry_matrix, prepare_face
    from ferdata.render.params import P, sample_params
    from ferdata.train.clean import clean_render
    with h5py.File(store, "r") as f:
        img, m, lm = f["image"][5], f["mask"][5], f["landmarks"][5]
    cfg = RenderConfig(size=32, perspective=0.0).resolved()
    p = sample_params(np.random.default_rng(4), cfg)
    p[P["lum_w"]] = 1.4                                     # a strong luminance step: released ignores it
    face = prepare_face(img, m, lm, 32)
    M = geometry_matrix(p, 32)
    warp = cv2.warpAffine(face.image, M[:2], (32, 32), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    hard = cv2.warpAffine(face.mask, M[:2], (32, 32), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT) > 127
    rel = clean_render(img, m, lm, p, 32, cfg.__dict__, released=True)
    assert np.array_equal(rel[hard], warp[hard]) and not rel[~hard].any()
    lum = clean_render(img, m, lm, p, 32, cfg.__dict__)
    assert not np.array_equal(rel, lum)
