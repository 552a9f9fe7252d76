"""No label of a test face reaches training, by any route: the composition (the CK+ neutral
draw), the class list, the holdout renders."""
import shutil

import h5py
import numpy as np
import pytest

from ferdata.config import RenderConfig
from ferdata.errors import FerdataError
from ferdata.labels import CLASS_INDEX
from ferdata.render.run import render
from ferdata.train.config import TrainConfig
from ferdata.train.data import build
from ferdata.train.split import resolve_split
from fixtures import train_fixtures as tf

FAST = dict(model="preactresnet18", model_kwargs=tf.TINY_MODEL, batch_size=16, lr=3e-3, num_workers=0,
            epochs=1, train_on="faces", eval_on="faces")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tf.make_store(tmp_path_factory.mktemp("leak") / "faces.h5", n_subjects=20,
                         classes=("neutral", "happiness", "sadness"), per_class=2)


def _relabel(store, dst, faces, to):
    shutil.copy(store, dst)
    with h5py.File(dst, "a") as f:
        lab = f["label"][:]
        lab[faces] = CLASS_INDEX[to]
        f["label"][:] = lab
    return dst


def _labels(path):
    with h5py.File(path) as f:
        return f["label"][:]


def test_neutral_draw_ignores_test_labels(store, tmp_path):
    cfg = TrainConfig(faces=str(store), folds=4, fold=1, neutral_subjects=6, **FAST)
    sp = resolve_split(cfg)
    lab = _labels(store)
    with h5py.File(store) as f:
        subj = np.array([x.decode() if isinstance(x, bytes) else str(x) for x in f["subject"][:]])
    all_test_neutral = np.flatnonzero((lab == CLASS_INDEX["neutral"]) & np.isin(subj, list(sp.test.subjects)))
    assert all_test_neutral.size > 0
    # every neutral face of every test subject becomes "happiness": training must not move
    poisoned = _relabel(store, tmp_path / "p.h5", all_test_neutral, "happiness")
    sp2 = resolve_split(TrainConfig(faces=str(poisoned), folds=4, fold=1, neutral_subjects=6, **FAST))
    assert np.array_equal(sp.train.faces, sp2.train.faces) and np.array_equal(sp.val.faces, sp2.val.faces)


def test_the_class_list_comes_from_the_training_side(store, tmp_path):
    cfg = TrainConfig(faces=str(store), folds=4, fold=1, **FAST)
    sp = resolve_split(cfg)
    inputs = __import__("ferdata.train.models", fromlist=["model_inputs"]).model_inputs("preactresnet18",
                                                                                         **tf.TINY_MODEL)
    assert build(cfg, tmp_path / "a", inputs).classes == ["neutral", "happiness", "sadness"]
    # one test face relabelled to a class no training face has: no new model output, one clear error
    poisoned = _relabel(store, tmp_path / "c.h5", sp.test.faces[:1], "contempt")
    with pytest.raises(FerdataError, match=r"the test side has 1 face\(s\) of contempt, a class the training side"):
        build(TrainConfig(faces=str(poisoned), folds=4, fold=1, **FAST), tmp_path / "b", inputs)
    # the recipe's class list decides when given
    ok = build(TrainConfig(faces=str(store), folds=4, fold=1, classes=["happiness", "sadness"], **FAST),
               tmp_path / "d", inputs)
    assert ok.classes == ["happiness", "sadness"]


def test_holdout_refuses_three_sides_of_the_same_faces(sample_dir, tmp_path):
    faces, bgs = sample_dir / "faces.h5", sample_dir / "backgrounds"
    sides = {}
    for name, seed in (("train", 0), ("val", 1000), ("test", 2000)):
        sides[name] = tmp_path / name
        render(faces, bgs, sides[name], RenderConfig(size=32, per_face=4, seed=seed, shard_size=64))
    cfg = TrainConfig(protocol="holdout", data=str(sides["train"]), val_data=str(sides["val"]),
                      test_data=str(sides["test"]), eval_on="renders", **{k: v for k, v in FAST.items()
                                                                          if k not in ("train_on", "eval_on")})
    with pytest.raises(FerdataError, match="val and test renders are of the same faces"):
        resolve_split(cfg)
    import dataclasses

    sp = resolve_split(dataclasses.replace(cfg, holdout_same_faces=True))
    assert sp.describe()["same_faces"] is True
