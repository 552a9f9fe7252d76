"""DDP on CPU: ``torchrun -m ferdata train`` (the click command itself) with two gloo ranks."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "sample_demo.toml"


@pytest.mark.slow
@pytest.mark.skipif(not RECIPE.exists(), reason="needs the repo's recipes/")
def test_torchrun_two_cpu_ranks_train_one_run(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not installed")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [torchrun, "--nproc-per-node", "2", "-m", "ferdata", "train", "--recipe", str(RECIPE),
            "--set", "epochs=1", "--set", "sample_per_face=40", "--set", "batch_size=16", "--set", "num_workers=0",
            "-o", str(tmp_path / "run")]
    r = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    run = tmp_path / "run"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["resolved"]["world_size"] == 2
    ev = json.loads((run / "eval.json").read_text())
    assert ev["best_epoch"] == 0 and 0.0 <= ev["test"]["accuracy"] <= 1.0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1  # rank 0 alone writes the run folder
    # one line of results from rank 0 only
    assert r.stdout.count("test accuracy") == 1, r.stdout
