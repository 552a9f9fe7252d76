"""Ctrl-C and SIGTERM stop train and cv within seconds: one line, a resumable state, exit 128+signal."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SETS = ["--set", "sample_per_face=48", "--set", "sample_size=32", "--set", "batch_size=16", "--set", "num_workers=0",
        "--set", "eval_on=renders", "--set", "protocol=holdout", "--set", "model_kwargs={\"width\": 8}",
        "--set", "lr=0.001"]


def _start(args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "ferdata", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc, timeout=240):
    t = time.monotonic()
    while not (path.exists() and path.stat().st_size > 0):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t < timeout, "the run did not reach its first epoch"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_train_stops_cleanly_and_resumes(tmp_path, sig):
    out = tmp_path / "run"
    args = ["train", *SETS, "--set", "epochs=40", "-o", str(out)]
    p = _start(args, tmp_path)
    _wait_for(out / "metrics.jsonl", p)
    t = time.monotonic()
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=60)
    assert time.monotonic() - t < 15
    assert p.returncode == 128 + sig, (stdout, stderr)
    lines = [l for l in stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"Interrupted ({signal.Signals(sig).name}) at "), stderr
    assert "--resume" in lines[0] and "Traceback" not in stderr and "Exception ignored" not in stderr
    assert (out / "last.pt").exists() and not (out / "eval.json").exists()
    done = len((out / "metrics.jsonl").read_text().splitlines())
    # resumable: the same command with --resume continues from last.pt (and can itself be stopped again)
    p = _start(args + ["--resume"], tmp_path)
    _wait_for(out / "metrics.jsonl", p)
    while len((out / "metrics.jsonl").read_text().splitlines()) <= done:
        assert p.poll() is None, p.communicate()
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=60)
    assert p.returncode == 130


@pytest.mark.slow
def test_cv_stops_cleanly(tmp_path):
    out = tmp_path / "cv"
    p = _start(["cv", *SETS, "--set", "epochs=40", "-o", str(out)], tmp_path)
    _wait_for(out / "fold-00" / "metrics.jsonl", p)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, (stdout, stderr)
    lines = [l for l in stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("Interrupted (SIGINT)") and "same command" in lines[0], stderr
    assert not (out / "cv.json").exists() and (out / "fold-00" / "last.pt").exists()


def test_one_line_per_epoch_without_a_terminal(tmp_path):
    """nohup / SLURM / torchrun: stdout is not a terminal, and every epoch still prints one line."""
    p = _start(["train", *SETS, "--set", "epochs=2", "-o", str(tmp_path / "run")], tmp_path)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr
    lines = [line for line in stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 0 (1 of 2)", "epoch 1 (2 of 2)"], stdout
    assert all("train loss" in line and "val macro F1" in line and line.rstrip().endswith(("s", "(best so far)"))
               for line in lines)
