"""The training loop end to end on tiny data (CPU), and its pieces."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fixtures import train_fixtures as tf
from ferdata.cli import main
from ferdata.config import RenderConfig
from ferdata.train.config import TrainConfig
from ferdata.errors import FerdataError
from ferdata.train import fit

TINY = dict(epochs=2, batch_size=16, lr=1e-3, num_workers=0, sample_per_face=48, sample_size=32,
            eval_batch_size=64, model="preactresnet18", model_kwargs=tf.TINY_MODEL)


def test_demo_loop_learns_and_writes_run_folder(tmp_path):
    threads = torch.get_num_threads()
    res = fit(TrainConfig(eval_on="renders", protocol="holdout", **TINY), tmp_path)
    assert torch.get_num_threads() == threads           # the run's thread choice does not outlive it
    for f in ("config.json", "metrics.jsonl", "last.pt", "best.pt", "eval.json", "confusion.json", "confusion.png"):
        assert (tmp_path / f).exists(), f
    recs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(recs) == 2 and recs[1]["train_loss"] < recs[0]["train_loss"]
    assert res["epochs_run"] == 2 and res["test"]["n"] == res["val"]["n"] == 2 * 32   # 2 faces x 32 held-out renders
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["resolved"]["classes"] == ["neutral", "happiness"]
    assert cfg["resolved"]["memory_format"] == "nchw" and cfg["resolved"]["torch_threads"] >= 1
    seeds = {json.loads((tmp_path / "sample-data" / s / "manifest.json").read_text())["config"]["seed"]
             for s in ("train", "val", "test")}
    assert seeds == {0, 1000, 2000}                      # val and test renders: two other seeds


@pytest.mark.slow
def test_resume_continues_identically(tmp_path):
    base = dict(eval_on="renders", protocol="holdout", **TINY)
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
    with pytest.raises(FerdataError, match="lr differ"):
        fit(TrainConfig(**{**base, "lr": 0.5}), tmp_path / "split", resume=True)


def test_corrupt_checkpoint_and_unknown_recipe_key(tmp_path):
    from ferdata.train.checkpoint import load_checkpoint
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


@pytest.mark.slow
def test_python_m_ferdata_train_is_the_click_command_and_reports_one_line():
    """``python -m ferdata train`` (what torchrun -m runs) is the ``ferdata train`` command itself."""
    r = subprocess.run([sys.executable, "-m", "ferdata", "train", "--set", "protocol=bogus"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.strip().splitlines() == ["Error: train config: protocol must be kfold|official|holdout, got 'bogus'"]
    gone = subprocess.run([sys.executable, "-m", "ferdata.train"], capture_output=True, text=True, timeout=60)
    assert gone.returncode != 0 and "ferdata.train" in gone.stderr  # the second, argparse entry is gone


@pytest.fixture(scope="module")
def official(sample_dir, tmp_path_factory):
    """A FER2013-like store (train/val/test by subject) and its renders."""
    from ferdata.render.run import render
    d = tmp_path_factory.mktemp("off")
    names = ("train", "train", "train", "val", "test")
    store = tf.make_store(d / "fer.h5", n_subjects=10, splits=lambda s: names[s % 5], size=48)
    render(store, sample_dir / "backgrounds", d / "shards", RenderConfig(size=48, per_face=2, shard_size=64))
    return store, d / "shards"


def test_official_split_weighted_sampling_and_noise(official, tmp_path):
    store, shards = official
    cfg = TrainConfig(data=str(shards), faces=str(store), protocol="official", class_balance="sample",
                      optimizer="sgd", weight_decay=1e-4, scheduler="plateau", early_stopping=30, noise=(0.1,),
                      noise_train=(0.2,), noise_epochs=1,
                      **{**TINY, "model": "deep_emotion", "model_kwargs": {"dropout": 0.0}, "lr": 1e-2, "epochs": 1})
    res = fit(cfg, tmp_path / "run")
    from ferdata.faces.store import FaceStore
    with FaceStore(store) as fs:
        n_test, n_val = int((fs.splits == "test").sum()), int((fs.splits == "val").sum())
    assert res["test"]["n"] == n_test and res["val"]["n"] == n_val
    conf = json.loads((tmp_path / "run" / "config.json").read_text())
    assert conf["split"]["test_split"] == "test" and conf["split"]["train_faces"] == 3 * n_test
    assert set(res["noise"]) == {"0.1"}
    assert set(res["noise_train"]["0.2"]) == {"val_accuracy", "test_accuracy", "test_macro_f1"}
    ev = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert ev["noise_train"] == res["noise_train"] and ev["test"] == res["test"]


def test_eval_split_on_a_shard_folder_is_not_ignored(official, tmp_path):
    store, shards = official
    fit(TrainConfig(data=str(shards), faces=str(store), protocol="official", **{**TINY, "epochs": 1}), tmp_path)
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "best.pt"), "--data", str(shards), "--split", "test",
                                  "--noise", "0.05,0.3", "-o", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    ev = json.loads((tmp_path / "ev" / "eval.json").read_text())
    from ferdata.faces.store import FaceStore
    with FaceStore(store) as fs:
        n_test = int((fs.splits == "test").sum())
    assert ev["eval"]["n"] == 2 * n_test and set(ev["noise"]) == {"0.05", "0.3"}   # 2 renders per test face
    other = tf.make_store(tmp_path / "other.h5", n_subjects=3)
    r = CliRunner().invoke(main, ["eval", str(tmp_path / "best.pt"), "--data", str(shards), "--split", "test",
                                  "--faces", str(other)])
    assert r.exit_code == 1 and "not the face store" in r.output


SMALL = {"feratt_rep_cls": {"input_size": 32, "att_width": 4, "width": 8, "embedding_dim": 8, "ft_filters": 8,
                            "rec_filters": 8},
         "lbp_attention": {"input_size": 32, "width_mult": 0.125, "reduce_channels": 8, "growth": 4},
         "deep_emotion_msa": {}, "va_cnn": {"input_size": [36, 28]}}


@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.slow) if m == "feratt_rep_cls" else m
                                   for m in sorted(SMALL)])
def test_every_family_trains_a_step(model, tmp_path):
    cfg = TrainConfig(eval_on="renders", protocol="holdout", max_steps_per_epoch=2,
                      **{**TINY, "epochs": 1, "batch_size": 8, "model": model, "model_kwargs": SMALL[model]})
    res = fit(cfg, tmp_path)
    rec = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert np.isfinite(rec["train_loss"])
    if model == "feratt_rep_cls":
        assert "train_rep" in rec and "train_att" in rec
    assert res["test"]["n"] == 64


def test_lbp_fields_and_per_variant_scaling(tmp_path):
    from ferdata.train.data import read_spec
    from ferdata.train.models import model_inputs
    from ferdata.train.prep import lbp_scale
    inp = model_inputs("lbp_attention")
    assert read_spec(TrainConfig(lbp="circle_P8_R1"), inp, {"lbp": []})["lbp_train"] == "lbp:circle_P8_R1"
    assert read_spec(TrainConfig(lbp="circle_P8_R1"), inp, {"lbp": ["lbp/circle_P8_R1"]})["lbp_train"] == \
        "lbp/circle_P8_R1"
    assert read_spec(TrainConfig(), model_inputs("preactresnet18"), {"lbp": []})["lbp_train"] is None
    assert lbp_scale("lbp:circle_P8_R1") == 255 and lbp_scale("lbp/uniform_P8_R1") == 9
    assert lbp_scale("nri_uniform") == 58 and lbp_scale("circle_P16_R2") == 65535


def test_epoch_sampler_depends_on_seed_and_epoch_and_splits_ranks():
    """Regression (dd4e43b): the weighted sampler's draw is a function of (seed, epoch), not of the epoch alone."""
    from ferdata.train.sampler import EpochSampler
    w = np.linspace(1, 3, 50)

    def order(seed, epoch, **kw):
        s = EpochSampler(50, weights=w, seed=seed, **kw)
        s.set_epoch(epoch)
        return s.order()
    assert order(0, 3) == order(0, 3)
    assert order(0, 3) != order(1, 3) and order(0, 3) != order(0, 4)
    r0, r1 = order(5, 2, rank=0, world_size=2), order(5, 2, rank=1, world_size=2)
    assert len(r0) == len(r1) == 25 and sorted(r0 + r1) == sorted(order(5, 2))
    p0 = EpochSampler(7, seed=1, rank=0, world_size=2).order()
    p1 = EpochSampler(7, seed=1, rank=1, world_size=2).order()
    assert len(p0) == len(p1) == 4 and set(p0) | set(p1) == set(range(7))


def test_class_counts_come_from_the_training_side_only(tmp_path, sample_dir):
    """Regression (d056a48): the class-weighted loss counts the training selection, not every render."""
    from ferdata.render.run import render
    from ferdata.train.data import build
    from ferdata.train.models import model_inputs
    store = tf.make_store(tmp_path / "f.h5", n_subjects=6, per_class=1)
    render(store, sample_dir / "backgrounds", tmp_path / "sh", RenderConfig(size=32, per_face=3, shard_size=64))
    cfg = TrainConfig(faces=str(store), data=str(tmp_path / "sh"), folds=3, val_subjects=1,
                      class_balance="loss", **TINY)
    data = build(cfg, tmp_path / "run", model_inputs("preactresnet18", **tf.TINY_MODEL))
    n_train = len(data.split.train.subjects)
    assert n_train == 3 and data.class_counts == [3.0 * n_train] * 3     # 3 renders per face, 1 face per class


def test_forward_batch_reads_inputs_through_a_wrapper():
    from ferdata.train.models import create_model, forward_batch
    m = create_model("lbp_attention", num_classes=3, **SMALL["lbp_attention"]).eval()
    wrapped = torch.nn.DataParallel(m)            # like DDP: the model is .module
    x = {"image": torch.randn(2, 3, 32, 32), "lbp": torch.rand(2, 1, 32, 32), "label": torch.zeros(2)}
    with torch.no_grad():
        a = forward_batch(wrapped, x)["logits"]
        b = forward_batch(wrapped, {**x, "lbp": torch.rand(2, 1, 32, 32)})["logits"]
    assert not torch.allclose(a, b)               # the LBP input reaches the model
    with pytest.raises(KeyError, match="lbp"):
        forward_batch(wrapped, {"image": x["image"]})


def test_unknown_model_is_one_error_before_anything_is_written(tmp_path):
    with pytest.raises(FerdataError, match="nosuchmodel"):
        fit(TrainConfig(model="nosuchmodel"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_fit_and_eval_draw_the_noise_figure(tmp_path):
    """eval.json's noise sweep becomes noise.png (Fig. 9) after fit and after ferdata eval."""
    from ferdata.train.evaluate import evaluate_checkpoint

    fit(TrainConfig(eval_on="renders", protocol="holdout", noise=(0.1, 0.3), **{**TINY, "epochs": 1}), tmp_path)
    png = tmp_path / "noise.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    evaluate_checkpoint(tmp_path / "best.pt", tmp_path / "sample-data" / "test", tmp_path / "ev", noise=(0.2,),
                        device="cpu")
    assert (tmp_path / "ev" / "noise.png").exists()
