"""The ``logger`` setting: TensorBoard event files and CSV logs of a run, read back with
TensorBoard's own reader and the csv module, checked against metrics.jsonl; a resumed run
appends without doubling; TensorBoard missing is one error; a one-class model is warned about."""
import csv
import dataclasses
import json
import logging
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import ferdata.train.loop as loop
from ferdata.cli import main
from ferdata.errors import FerdataError
from ferdata.train.config import TrainConfig
from ferdata.train.loggers import confusion_image, epoch_tags, hparam_values, trim_csv
from ferdata.train.loop import fit
from fixtures import train_fixtures as tf

TINY = dict(epochs=2, batch_size=16, lr=1e-3, num_workers=0, sample_per_face=48, sample_size=32,
            eval_batch_size=64, model="preactresnet18", model_kwargs=tf.TINY_MODEL, eval_on="renders",
            protocol="holdout", max_steps_per_epoch=3)


class Killed(BaseException):
    """A kill -9 stand-in: nothing after it runs (but ``finally`` blocks, which flush the logs)."""


def _records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _killed_in_epoch_1_then_resumed(run, logger, monkeypatch):
    """Epoch 1 is trained and logged, then killed before its checkpoint; the resume redoes it."""
    real, calls = loop.save_epoch, [0]

    def save_epoch(*a, **kw):
        calls[0] += 1
        if calls[0] == 2:
            raise Killed()
        return real(*a, **kw)
    monkeypatch.setattr(loop, "save_epoch", save_epoch)
    with pytest.raises(Killed):
        fit(TrainConfig(**TINY, logger=logger), run)
    monkeypatch.setattr(loop, "save_epoch", real)
    return fit(TrainConfig(**TINY, logger=logger), run, resume=True)


def _accumulator(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_events_read_back_equal_metrics_jsonl_and_resume_does_not_double(tmp_path, monkeypatch):
    from tensorboard.plugins.hparams import plugin_data_pb2

    run = tmp_path / "run"
    res = _killed_in_epoch_1_then_resumed(run, "tensorboard", monkeypatch)
    assert len(list(run.glob("events.out.tfevents.*"))) == 2        # the resumed run appended a file
    recs = _records(run)
    assert [r["epoch"] for r in recs] == [0, 1]
    acc = _accumulator(run)
    loss = acc.Scalars("train/loss")
    # 3 steps per epoch; the killed session's epoch-1 steps (4..6) were purged, not doubled
    assert [e.step for e in loss] == [1, 2, 3, 4, 5, 6]
    assert len(acc.Scalars("train/lr")) == 6 and acc.Scalars("train/lr")[0].value == pytest.approx(1e-3)
    val = acc.Scalars("val/accuracy")
    assert [e.step for e in val] == [3, 6]
    np.testing.assert_allclose([e.value for e in val], [r["val_acc"] for r in recs], rtol=1e-6)
    np.testing.assert_allclose([e.value for e in acc.Scalars("val/macro_f1")], [r["val_macro_f1"] for r in recs],
                               rtol=1e-6)
    np.testing.assert_allclose([e.value for e in acc.Scalars("epoch/train_loss")], [r["train_loss"] for r in recs],
                               rtol=1e-6)
    # the epoch's mean train loss is the mean of its steps' losses (equal batches)
    assert np.mean([e.value for e in loss[3:]]) == pytest.approx(recs[1]["train_loss"], rel=1e-5)
    images = acc.Images("val/confusion")
    assert [i.step for i in images] == [3, 6]
    from PIL import Image
    import io
    img = np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string)))
    assert img.shape[2] in (3, 4) and img.shape[0] == images[-1].height > 100 and img.std() > 10
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = start.session_start_info.hparams
    assert hp["lr"].number_value == pytest.approx(1e-3) and hp["model"].string_value == "preactresnet18"
    assert hp["logger"].string_value == "tensorboard" and json.loads(hp["model_kwargs"].string_value) == tf.TINY_MODEL
    exp = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert "hparams/test_accuracy" in {m.name.tag for m in exp.metric_infos}
    assert acc.Scalars("hparams/test_accuracy")[-1].value == pytest.approx(res["test"]["accuracy"], rel=1e-6)


def test_csv_rows_equal_metrics_jsonl_and_resume_trims_the_killed_epoch(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _killed_in_epoch_1_then_resumed(run, "csv", monkeypatch)
    recs = _records(run)
    with open(run / "epochs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(recs[0])                                   # one column per metrics.jsonl key
    assert len(rows) == len(recs) == 2
    for row, rec in zip(rows, recs):
        for k, v in rec.items():
            got = row[k]
            assert (bool(int(got)) == v) if isinstance(v, bool) else (float(got) == v), (k, got, v)
    with open(run / "steps.csv", newline="") as f:
        steps = list(csv.DictReader(f))
    assert [(int(s["epoch"]), int(s["step"])) for s in steps] == [(0, 1), (0, 2), (0, 3), (1, 4), (1, 5), (1, 6)]
    assert np.mean([float(s["loss"]) for s in steps[3:]]) == pytest.approx(recs[1]["train_loss"], rel=1e-9)
    assert {float(s["lr"]) for s in steps} == {1e-3}
    assert not list(run.glob("events.out.tfevents.*"))


def test_a_new_run_over_an_old_one_replaces_its_logs(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "steps.csv").write_text("epoch,step,loss,lr\n5,99,1.0,0.1\n")
    (run / "events.out.tfevents.1.host.1.0").write_bytes(b"old")
    cfg = TrainConfig(**{**TINY, "epochs": 1, "max_steps_per_epoch": 1}, logger="csv")
    with pytest.raises(FerdataError, match=r"already holds a run \(steps.csv\)"):   # an old run's logs are kept
        fit(cfg, run)
    fit(dataclasses.replace(cfg, overwrite=True), run)
    assert (run / "steps.csv").read_text().splitlines()[1].startswith("0,1,")
    assert not (run / "events.out.tfevents.1.host.1.0").exists()


def test_trim_csv_keeps_the_header_and_the_checkpointed_epochs(tmp_path):
    p = tmp_path / "epochs.csv"
    p.write_text("epoch,train_loss\n0,1.5\n1,1.25\n2,1.0\n3,0.")     # a torn last row
    trim_csv(p, 1)
    assert p.read_text() == "epoch,train_loss\n0,1.5\n1,1.25\n"
    trim_csv(tmp_path / "absent.csv", 0)
    assert not (tmp_path / "absent.csv").exists()


def test_tags_hparams_and_the_confusion_image():
    tags = epoch_tags({"epoch": 2, "train_loss": 0.5, "val_acc": 0.75, "val_macro_f1": 0.7, "val_n": 64,
                       "val_single_class": False, "lr": 1e-3, "seconds": float("nan")})
    assert tags == {"epoch": 2.0, "epoch/train_loss": 0.5, "val/accuracy": 0.75, "val/macro_f1": 0.7,
                    "val/single_class": 0.0, "epoch/lr": 1e-3}
    hp = hparam_values({"lr": 1e-3, "data": None, "noise": [0.1], "model_kwargs": {"width": 8}, "amp": "none",
                        "compile": False})
    assert hp == {"lr": 1e-3, "data": "none", "noise": "[0.1]", "model_kwargs": '{"width": 8}', "amp": "none",
                  "compile": False}
    img = confusion_image(np.array([[5, 1], [0, 7]]), ["neutral", "happiness"], "epoch 0")
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 10                # drawn, not blank


def test_tensorboard_missing_is_one_error_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)   # as if tensorboard were not installed
    with pytest.raises(FerdataError, match=r"pip install 'ferdata\[tensorboard\]'"):
        fit(TrainConfig(**TINY, logger="tensorboard"), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    r = CliRunner().invoke(main, ["train", "--set", "logger=tensorboard", "--set", "eval_on=renders",
                                  "--set", "protocol=holdout", "-o", str(tmp_path / "cli")])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and r.output.startswith("Error: logger=tensorboard")
    assert "ferdata[tensorboard]" in r.output and not (tmp_path / "cli").exists()


def test_a_model_predicting_one_class_is_warned_about_once_and_flagged(tmp_path, monkeypatch, caplog):
    real = loop.predict

    def one_class(model, loader, prep, amp, *a, **kw):   # validation sees class 1 predicted everywhere
        logits, labels, emb = real(model, loader, prep, amp, *a, **kw)
        logits = np.zeros_like(logits)
        logits[:, 1] = 1
        return logits, labels, emb
    monkeypatch.setattr(loop, "predict", one_class)
    with caplog.at_level(logging.WARNING, logger="ferdata.train.loop"):
        fit(TrainConfig(**{**TINY, "max_steps_per_epoch": 1}), tmp_path)
    warned = [r for r in caplog.records if "every validation sample" in r.getMessage()]
    assert len(warned) == 1 and "happiness" in warned[0].getMessage() and "epoch 0" in warned[0].getMessage()
    assert [r["val_single_class"] for r in _records(tmp_path)] == [True, True]
