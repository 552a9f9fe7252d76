"""A run folder stays consistent whatever the kill point, and has one writer (issue: experiments
that cannot silently lie)."""
import errno
import json
import subprocess
import sys
import time

import pytest
import torch

import ferdata.train.checkpoint as ck
import ferdata.train.loop as loop
from ferdata.errors import FerdataError
from ferdata.train import fit
from ferdata.train.config import TrainConfig
from fixtures import train_fixtures as tf

TINY = dict(epochs=2, batch_size=16, lr=1e-3, num_workers=0, sample_per_face=48, sample_size=32,
            eval_batch_size=64, model="preactresnet18", model_kwargs=tf.TINY_MODEL, eval_on="renders",
            protocol="holdout")


class Killed(BaseException):
    """A kill -9 stand-in: nothing after it runs."""


def _every_epoch_improves(monkeypatch):
    real = loop.select

    def select(cfg, prog, rec, epoch):
        real(cfg, prog, rec, epoch)
        prog.best, prog.best_epoch, prog.bad_epochs = float(epoch), epoch, 0
        return True
    monkeypatch.setattr(loop, "select", select)


def _kill_on(monkeypatch, module, name, call):
    real, n = getattr(module, name), [0]

    def f(*a, **kw):
        n[0] += 1
        if n[0] == call:
            raise Killed()
        return real(*a, **kw)
    monkeypatch.setattr(module, name, f)


@pytest.mark.parametrize("where, call", [
    ("save_checkpoint", 3),  # epoch 1: killed while writing the new best, before last.pt
    ("save_checkpoint", 4),  # epoch 1: new best written, killed while writing last.pt
    ("publish", 2),          # epoch 1: last.pt names epoch 1 as best, killed before best.pt is replaced
])
def test_resume_after_a_kill_evaluates_the_epoch_it_reports(tmp_path, monkeypatch, where, call):
    _every_epoch_improves(monkeypatch)
    with monkeypatch.context() as m:
        _kill_on(m, ck, where, call)
        with pytest.raises(Killed):
            fit(TrainConfig(**TINY), tmp_path)
    res = fit(TrainConfig(**TINY), tmp_path, resume=True)
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    assert res["best_epoch"] == best["epoch"] == 1
    assert json.loads((tmp_path / "eval.json").read_text())["best_epoch"] == 1
    assert not (tmp_path / "best.next.pt").exists()


def test_a_best_pt_of_another_epoch_is_refused(tmp_path):
    fit(TrainConfig(**{**TINY, "epochs": 1}), tmp_path)
    state = torch.load(tmp_path / "best.pt", weights_only=False)
    ck.save_checkpoint(tmp_path / "best.pt", {**state, "epoch": 7})
    with pytest.raises(FerdataError, match="holds epoch 7.*selected epoch 0"):
        fit(TrainConfig(**{**TINY, "epochs": 1}), tmp_path, resume=True)


HOLD = ("import sys, time\nfrom ferdata.train.checkpoint import run_lock\n"
        "with run_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(30)\n")


def test_a_second_run_into_the_same_folder_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t = time.monotonic()
        with pytest.raises(FerdataError, match="another run is writing this folder"):
            fit(TrainConfig(**TINY), tmp_path / "run")
        assert time.monotonic() - t < 20
        assert not (tmp_path / "run" / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    fit(TrainConfig(**{**TINY, "epochs": 1}), tmp_path / "run")  # the lock dies with its process


def test_resume_and_overwrite_together_are_refused(tmp_path):
    with pytest.raises(FerdataError, match="resume and overwrite"):
        fit(TrainConfig(**{**TINY, "overwrite": True}), tmp_path, resume=True)


def test_a_full_disk_while_checkpointing_names_the_file(tmp_path, monkeypatch):
    def full(path, write, mode="wb"):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(ck, "atomic_write", full)
    with pytest.raises(FerdataError, match=r"last\.pt: cannot write the checkpoint \(No space left on device\)"):
        ck.save_checkpoint(tmp_path / "last.pt", {"x": torch.zeros(3)})


def test_a_one_class_experiment_is_refused_before_training(tmp_path):
    store = tf.make_store(tmp_path / "one.h5", n_subjects=6, classes=("happiness",), size=32)
    cfg = TrainConfig(**{**TINY, "faces": str(store), "protocol": "kfold", "folds": 3, "train_on": "faces",
                         "eval_on": "faces"})
    with pytest.raises(FerdataError, match=r"training side holds 1 class\(es\) \(happiness\)"):
        fit(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_best_pt_holds_the_weights_not_the_optimiser(tmp_path):
    fit(TrainConfig(**{**TINY, "epochs": 1, "model_kwargs": {"width": 16}}), tmp_path)
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    last = torch.load(tmp_path / "last.pt", weights_only=False)
    assert "optimizer" not in best and "rng" not in best and "optimizer" in last
    assert best["epoch"] == 0 and best["config"] == last["config"]
    for k, v in last["model"].items():
        assert torch.equal(v, best["model"][k])
    assert (tmp_path / "best.pt").stat().st_size < 0.6 * (tmp_path / "last.pt").stat().st_size
