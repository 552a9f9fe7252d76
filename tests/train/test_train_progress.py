"""What train, cv and eval show while they work: a bar with a total, what the run waits for, the
epoch's loss (terminals); one line per epoch and nothing else when the output is not a terminal."""
import re

import pytest
from click.testing import CliRunner

from ferdata.cli import main
from ferdata.cli._common import TrainProgress, progress

SETS = ["--set", "sample_per_face=48", "--set", "sample_size=32", "--set", "batch_size=16", "--set", "num_workers=0",
        "--set", "eval_on=renders", "--set", "protocol=holdout", "--set", "model_kwargs={\"width\": 8}",
        "--set", "lr=0.001", "--set", "max_steps_per_epoch=2", "--set", "epochs=3"]
BAR = re.compile(r"\r|\x1b\[|\d+%\||it/s|sample/s")   # what a tqdm bar leaves in a log


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("progress") / "run"
    r = CliRunner().invoke(main, ["train", *SETS, "-o", str(out)])   # not a terminal, like nohup or SLURM
    return out, r


def test_train_without_a_terminal_prints_one_line_per_epoch_and_no_bar(cli_run):
    out, r = cli_run
    assert r.exit_code == 0, r.output
    lines = [line for line in r.output.splitlines() if not line.startswith("WARNING ")]  # a one-class warning
    assert [line.split(":")[0] for line in lines if line.startswith("epoch ")] == \
        ["epoch 0 (1 of 3)", "epoch 1 (2 of 3)", "epoch 2 (3 of 3)"], r.output
    assert len(lines) == 4 and lines[-1].startswith(f"{out}: best epoch"), r.output   # and the result line
    assert not BAR.search(r.output), repr(r.output)
    assert "loading data" not in r.output and "validating" not in r.output


def test_the_bar_has_a_total_names_what_it_waits_for_and_shows_the_loss(capsys):
    shown = TrainProgress("train m", disable=False)          # as on a terminal
    shown.on_status({"stage": "loading data"})
    assert shown.bar.desc == "train m: loading data" and shown.bar.total is None
    # a run resumed at epoch 1 of 3, 100 samples per epoch
    shown.on_status({"stage": "starting loader workers", "epochs": 3, "start_epoch": 1, "samples_per_epoch": 100})
    assert shown.bar.total == 300 and shown.bar.n == 100 and shown.bar.desc.endswith("starting loader workers")
    shown.on_step({"epoch": 1, "step": 1, "samples": 16, "loss": 2.0, "lr": 1e-3})
    shown.on_step({"epoch": 1, "step": 2, "samples": 16, "loss": 1.0, "lr": 1e-3})
    assert shown.bar.n == 132 and shown.bar.desc == "train m"
    assert shown.bar.postfix == "epoch 1 (2 of 3), loss 1.5000"               # the epoch as epoch_line names it
    shown.on_status({"stage": "validating epoch 1", "epoch": 1})
    assert shown.bar.desc == "train m: validating epoch 1"
    shown.on_epoch({"epoch": 1, "epochs": 3, "train_loss": 1.5, "val_acc": 0.5, "val_macro_f1": 0.4, "lr": 1e-3,
                    "seconds": 2.0, "improved": True})
    shown.close()
    cap = capsys.readouterr()
    assert cap.out.splitlines() == ["epoch 1 (2 of 3): train loss 1.5000, val acc 0.5000, val macro F1 0.4000, "
                                    "lr 1.00e-03, 2.0 s (best so far)"]
    assert "/300" in cap.err and "loading data" in cap.err and "ETA" not in cap.out


def test_a_fit_without_on_status_is_sized_by_its_first_step():
    shown = TrainProgress("fold 0 m", disable=False)          # ferdata cv's fit passes on_step and on_epoch only
    shown.on_step({"epoch": 2, "step": 1, "samples": 8, "loss": 0.5, "epochs": 4, "samples_per_epoch": 40})
    assert shown.bar.total == 160 and shown.bar.n == 88
    shown.close()


def test_no_bar_on_ddp_ranks_other_than_0(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert progress(desc="x").disable
    monkeypatch.setenv("RANK", "0")
    bar = progress(desc="x", disable=False)
    assert not bar.disable
    bar.close()


def test_eval_reports_a_total_and_every_batch(cli_run, capsys):
    from ferdata.train.evaluate import evaluate_checkpoint

    out, r = cli_run
    assert r.exit_code == 0, r.output
    events, batches = [], []
    res = evaluate_checkpoint(out / "best.pt", out / "sample-data" / "test", out / "ev", noise=(0.1,),
                              on_status=events.append, on_batch=batches.append, batch_size=24)
    stages = [e["stage"] for e in events]
    assert stages == ["loading the checkpoint", "reading data", "evaluating", "writing figures"]
    n = res["eval"]["n"]
    assert events[2]["total"] == 2 * n == sum(batches) and max(batches) == 24   # clean pass + one noise level
    r = CliRunner().invoke(main, ["eval", str(out / "best.pt"), "--data", str(out / "sample-data" / "test"),
                                  "-o", str(out / "ev2")])
    assert r.exit_code == 0 and r.output.startswith("accuracy ") and not BAR.search(r.output), r.output
