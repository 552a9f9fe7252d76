"""The ``ferdata`` process ends quickly after a command that allowed it
(ferdata.cli._exit): what it printed and wrote is all there, its exit code is right,
and a failed command exits the normal way."""
import subprocess
import sys

import pytest

from ferdata.cli import _exit
from ferdata.shards.manifest import file_sha256, load_manifest
from fixtures.lbp_reference import small_shard_folder


def _ferdata(*args, cwd):
    return subprocess.run([sys.executable, "-m", "ferdata", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_lbp_as_a_process_prints_and_commits_everything(tmp_path):
    folder = small_shard_folder(tmp_path / "r", n=[20, 20])
    r = _ferdata("lbp", str(folder), "--workers", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("lbp/circle_P8_R1 added to 2 shards, 0 already had it")
    m = load_manifest(folder)
    assert m["lbp"] == ["lbp/circle_P8_R1"]
    assert all(e["sha256"] == file_sha256(folder / n) and "pending" not in e for n, e in m["shards"].items())
    assert not list(folder.glob("*.tmp-*"))


def test_a_failed_command_exits_the_normal_way_with_its_error(tmp_path):
    folder = small_shard_folder(tmp_path / "r", n=[20])
    (folder / "shard-000000.h5").write_bytes(b"x" * (folder / "shard-000000.h5").stat().st_size)
    r = _ferdata("lbp", str(folder), "--workers", "2", cwd=tmp_path)
    assert r.returncode == 1 and "Error: " in r.stderr and "shard-000000.h5" in r.stderr
    assert "Traceback" not in r.stderr


def test_finish_without_allow_or_after_a_failure_raises_systemexit(monkeypatch):
    monkeypatch.setattr(_exit, "_ALLOWED", [False])
    with pytest.raises(SystemExit) as ei:
        _exit.finish(0)
    assert ei.value.code == 0
    _exit.allow()
    with pytest.raises(SystemExit) as ei:
        _exit.finish(2)
    assert ei.value.code == 2


def test_render_as_a_process_writes_and_records_every_shard(sample_dir, tmp_path):
    r = _ferdata("render", str(sample_dir / "faces.h5"), "--backgrounds", str(sample_dir / "backgrounds"),
                 "-o", str(tmp_path / "o"), "--per-face", "40", "--shard-size", "32", "--size", "48",
                 "--workers", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "3 shard(s) made, 0 already complete, 3 in all; 80 samples" in r.stdout
    m = load_manifest(tmp_path / "o")
    assert sorted(m["shards"]) == ["shard-000000.h5", "shard-000001.h5", "shard-000002.h5"]
    assert all(e["sha256"] == file_sha256(tmp_path / "o" / n) for n, e in m["shards"].items())
    assert (tmp_path / "o" / "render_config.json").exists()
