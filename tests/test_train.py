"""The training loop end to end on tiny renders (CPU)."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import dataset_fixtures as fx
from ferdata.cli import main
from ferdata.config import IngestConfig, RenderConfig, TrainConfig
from ferdata.datasets import read_dataset
from ferdata.errors import FerdataError
from ferdata.ingest import ingest
from ferdata.render.run import render
from ferdata.train import fit

TINY = dict(epochs=2, batch_size=16, lr=1e-3, num_workers=0, sample_per_face=48, sample_size=32,
            eval_batch_size=64)


@pytest.fixture(scope="module")
def multi_subject(tmp_path_factory):
    """A face store with 6 subjects over 3 classes, and its renders."""
    d = tmp_path_factory.mktemp("multi")
    root = fx.make_folder(d / "data", fx.sample_faces(), classes=("happy", "neutral", "sad"), n_per_class=4,
                          n_subjects=6)
    ingest(read_dataset("folder", root, subject_regex=r"^(S\d+)_"), d / "faces.h5", "folder",
           IngestConfig(size=64))
    from ferdata.sample import make_sample
    make_sample(d / "s")
    render(d / "faces.h5", d / "s" / "backgrounds", d / "shards", RenderConfig(size=32, per_face=6, shard_size=64))
    return d


def test_demo_loop_learns_and_writes_run_folder(tmp_path):
    res = fit(TrainConfig(model="preactresnet18", eval_on="renders", protocol="holdout", **TINY), tmp_path)
    for f in ("config.json", "metrics.jsonl", "last.pt", "best.pt", "eval.json", "confusion.json", "confusion.png"):
        assert (tmp_path / f).exists(), f
    recs = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(recs) == 2 and recs[1]["train_loss"] < recs[0]["train_loss"]
    assert 0 <= res["eval"]["accuracy"] <= 1 and res["epochs_run"] == 2
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["resolved"]["classes"] == ["neutral", "happiness"]


def test_resume_continues_identically(tmp_path):
    base = dict(model="preactresnet18", eval_on="renders", protocol="holdout", **TINY)
    base["epochs"] = 2
    torch.manual_seed(0)
    fit(TrainConfig(**base), tmp_path / "straight")
    fit(TrainConfig(**{**base, "epochs": 1}), tmp_path / "split")
    fit(TrainConfig(**base), tmp_path / "split", resume=True)
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 1
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    la = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    lb = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["train_loss"] for x in la] == [json.loads(x)["train_loss"] for x in lb]


def test_kfold_never_shares_a_subject(multi_subject, tmp_path):
    from ferdata.train.data import build
    from ferdata.train.models import model_inputs
    d = multi_subject
    for fold in range(3):
        cfg = TrainConfig(model="preactresnet18", data=str(d / "shards"), faces=str(d / "faces.h5"),
                          eval_on="faces", protocol="kfold", folds=3, fold=fold, **TINY)
        data = build(cfg, tmp_path, model_inputs("preactresnet18"))
        train_subj = set(np.asarray(data.train_dataset.subjects)[np.unique(
            data.train_dataset._source.column("subject")[data.train_dataset._sel])])
        eval_subj = set(data.describe_eval["subjects"])
        assert eval_subj and train_subj and not (train_subj & eval_subj)
        seen = set()
        for batch in data.train_loader:
            seen |= set(batch["label"].tolist())
        assert seen
    res = fit(TrainConfig(model="preactresnet18", data=str(d / "shards"), faces=str(d / "faces.h5"),
                          eval_on="faces", protocol="kfold", folds=3, fold=1, noise=(0.1,), **TINY),
              tmp_path / "run")
    assert "0.1" in res["noise"] and res["eval"]["n"] > 0


def test_corrupt_checkpoint_and_unknown_recipe_key(tmp_path):
    from ferdata.train.loop import load_checkpoint
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"garbage" * 10)
    with pytest.raises(FerdataError, match="corrupt"):
        load_checkpoint(bad)
    r = CliRunner().invoke(main, ["eval", str(bad), "--data", str(tmp_path)])
    assert r.exit_code == 1 and "corrupt" in r.output and "Traceback" not in r.output
    recipe = tmp_path / "r.toml"
    recipe.write_text('model = "preactresnet18"\nlearning_rate = 0.1\n')
    r = CliRunner().invoke(main, ["train", "--recipe", str(recipe), "-o", str(tmp_path / "x")])
    assert r.exit_code == 1 and "learning_rate" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["train", "--set", "optimizer=rmsprop", "--set", "data=x", "-o", str(tmp_path / "y")])
    assert r.exit_code == 1 and "optimizer" in r.output


def test_resume_without_checkpoint_is_clear(tmp_path):
    with pytest.raises(FerdataError, match="nothing to resume"):
        fit(TrainConfig(eval_on="renders", protocol="holdout", **TINY), tmp_path, resume=True)


def test_eval_command_on_face_store(multi_subject, tmp_path):
    d = multi_subject
    fit(TrainConfig(model="preactresnet18", data=str(d / "shards"), faces=str(d / "faces.h5"), eval_on="faces",
                    protocol="kfold", folds=3, **{**TINY, "epochs": 1}), tmp_path)
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "best.pt"), "--data", str(d / "faces.h5"),
                                  "--noise", "0.05,0.3", "-o", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    ev = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert set(ev["noise"]) == {"0.05", "0.3"} and len(ev["eval"]["confusion_matrix"]) == 3
    assert (tmp_path / "ev" / "confusion.png").exists()


@pytest.mark.parametrize("model", ["feratt_rep_cls", "lbp_attention", "deep_emotion_msa", "va_cnn"])
def test_every_family_trains_a_step(model, tmp_path):
    kw = {}
    if model in ("feratt_rep_cls", "lbp_attention"):
        kw = {"input_size": [32, 32]} if model == "feratt_rep_cls" else {"input_size": [64, 64]}
    cfg = TrainConfig(model=model, model_kwargs=kw, eval_on="renders", protocol="holdout",
                      max_steps_per_epoch=2, **{**TINY, "epochs": 1, "batch_size": 8})
    res = fit(cfg, tmp_path)
    rec = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert np.isfinite(rec["train_loss"])
    if model == "feratt_rep_cls":
        assert "train_rep" in rec and "train_att" in rec
    assert res["eval"]["n"] > 0


def test_official_split_with_weighted_sampling(tmp_path):
    """FER2013 layout: renders of 'train' faces, evaluated on the real 'test' faces."""
    root = fx.make_fer2013(tmp_path / "fer", fx.sample_faces(), n_rows=21)
    ingest(read_dataset("fer2013", root), tmp_path / "fer.h5", "fer2013", IngestConfig())
    from ferdata.sample import make_sample
    make_sample(tmp_path / "s")
    render(tmp_path / "fer.h5", tmp_path / "s" / "backgrounds", tmp_path / "shards",
           RenderConfig(size=48, per_face=4, shard_size=32))
    cfg = TrainConfig(model="deep_emotion", data=str(tmp_path / "shards"), faces=str(tmp_path / "fer.h5"),
                      eval_on="faces", protocol="official", class_balance="sample", optimizer="sgd",
                      weight_decay=1e-4, scheduler="plateau", early_stopping=30, **{**TINY, "lr": 1e-2})
    res = fit(cfg, tmp_path / "run")
    from ferdata.facestore import FaceStore
    with FaceStore(tmp_path / "fer.h5") as fs:
        n_test = int((fs.splits == "test").sum())
    assert res["eval"]["n"] == n_test > 0
    conf = json.loads((tmp_path / "run" / "config.json").read_text())
    assert conf["resolved"]["eval"]["split"] == "test"


def test_lbp_input_read_from_shards_once_added(multi_subject, tmp_path):
    import shutil
    from ferdata.features.lbp_io import add_lbp_to_shards
    from ferdata.shards.manifest import load_manifest
    from ferdata.train.data import _lbp_fields
    from ferdata.train.models import model_inputs
    shards = tmp_path / "shards"
    shutil.copytree(multi_subject / "shards", shards)
    inp, cfg = model_inputs("lbp_attention"), TrainConfig(lbp="circle_P8_R1")
    assert _lbp_fields(cfg, inp, load_manifest(shards)) == ("lbp:circle_P8_R1", "lbp:circle_P8_R1")
    add_lbp_to_shards(shards, "circle", 8, 1)
    assert _lbp_fields(cfg, inp, load_manifest(shards)) == ("lbp/circle_P8_R1", "lbp:circle_P8_R1")
    assert _lbp_fields(cfg, model_inputs("preactresnet18"), load_manifest(shards)) == (None, None)
