"""Issue 10, data paths (2/2): full disks, dead workers, dead parents, options at the boundary."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ferdata.cli import main
from ferdata.config import RenderConfig
from ferdata.errors import FerdataError
from ferdata.render.run import parse_shard_range, render
from ferdata.shards.inspect import verify
from ferdata.shards.manifest import load_manifest

SMALL = dict(per_face=24, shard_size=16, size=64)  # 2 faces -> 48 samples, 3 shards
TESTS = Path(__file__).parent  # on sys.path: holds the fixtures package (fixtures._pool_tasks)


@pytest.fixture(scope="module")
def rendered(sample_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("hardening_workers")
    render(sample_dir / "faces.h5", sample_dir / "backgrounds", root / "raw", RenderConfig(**SMALL, encoding="raw"))
    return root


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


_LIMITED = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY)); "
            "sys.argv = ['ferdata'] + sys.argv[2:]; from ferdata.cli import main; main()")


def test_full_disk_keeps_render_config_whole(rendered, tmp_path):
    """A file-size limit makes every write past 200 bytes fail like a full disk (also as root)."""
    folder = _copy(rendered / "raw", tmp_path / "f")
    old = {"size": 64, "seed": 0}
    (folder / "render_config.json").write_text(json.dumps(old))
    m = load_manifest(folder)
    args = ["render", m["face_store"]["path"], "--backgrounds", m["backgrounds"]["path"], "--size", "64",
            "--per-face", "24", "--shard-size", "16", "--encoding", "raw", "-o", str(folder)]
    p = subprocess.run([sys.executable, "-c", _LIMITED, "200", *args], capture_output=True, text=True)
    assert p.returncode == 1 and "Error: " in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert json.loads((folder / "render_config.json").read_text()) == old
    assert not list(folder.glob("*.tmp-*"))


def test_full_disk_while_writing_shards_and_lbp_is_one_error(rendered, tmp_path):
    """Real write failures inside HDF5 (not a mock): one Error line, no temp, no crash at exit."""
    m = load_manifest(rendered / "raw")
    out = tmp_path / "new"
    args = ["render", m["face_store"]["path"], "--backgrounds", m["backgrounds"]["path"], "--size", "64",
            "--per-face", "24", "--shard-size", "16", "--encoding", "raw", "-o", str(out)]
    p = subprocess.run([sys.executable, "-c", _LIMITED, "100000", *args], capture_output=True, text=True)
    assert p.returncode == 1 and "cannot write the shard (File too large)" in p.stderr, p.stderr
    assert load_manifest(out)["shards"] == {} and not list(out.glob("*.tmp-*"))
    folder = _copy(rendered / "raw", tmp_path / "f")
    limit = (folder / "shard-000000.h5").stat().st_size + 4096
    p = subprocess.run([sys.executable, "-c", _LIMITED, str(limit), "lbp", str(folder), "--workers", "1"],
                       capture_output=True, text=True)
    assert p.returncode == 1 and p.stderr.count("Error: ") == 1 and "File too large" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and not list(folder.glob("*.tmp-*"))
    assert verify(folder)["problems"] == [] and load_manifest(folder)["lbp"] == []


def test_full_disk_during_manifest_write_leaves_no_temp(rendered, tmp_path, monkeypatch):
    import errno

    from ferdata.shards.manifest import record_shard

    folder = _copy(rendered / "raw", tmp_path / "f")
    before = (folder / "manifest.json").read_bytes()

    import ferdata.atomic as tf
    real_fsync = os.fsync

    def full(fd):  # the temp is written; flushing it to a full disk fails (as with delayed allocation)
        if any(p.name.startswith("manifest.json.tmp-") for p in folder.iterdir()):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)
    monkeypatch.setattr(tf.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        record_shard(folder, "shard-000003.h5", {"n": 1, "bytes": 1, "sha256": "0"})
    assert (folder / "manifest.json").read_bytes() == before
    assert not list(folder.glob("manifest.json.tmp-*"))


# ---- workers: a dead worker, a dead parent --------------------------------------------------

def test_killed_worker_is_one_error_and_finished_results_are_kept():
    from fixtures._pool_tasks import die_on_two

    from ferdata.parallel import run_tasks
    got = {}
    with pytest.raises(FerdataError, match="worker process ended abruptly"):
        for a, r in run_tasks(die_on_two, [0, 1, 2, 3], workers=2):
            got[a] = r
    assert {0: 0, 1: 10}.items() <= got.items()


def _state(pid):
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0]
    except (OSError, IndexError):
        return "gone"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_their_parent(tmp_path):
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from fixtures._pool_tasks import sleeper; "
            "from ferdata.parallel import run_tasks; list(run_tasks(sleeper, [sys.argv[2]] * 2, workers=2))")
    parent = subprocess.Popen([sys.executable, "-c", code, str(TESTS), str(tmp_path)])
    deadline = time.time() + 60
    while time.time() < deadline and len(list(tmp_path.glob("pid-*"))) < 2:
        time.sleep(0.1)
    pids = [int(p.name[4:]) for p in tmp_path.glob("pid-*")]
    assert len(pids) == 2, "workers did not start"
    parent.kill()
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_state(p) not in ("gone", "Z") for p in pids):
        time.sleep(0.1)
    alive = [p for p in pids if _state(p) not in ("gone", "Z")]
    for p in alive:
        os.kill(p, signal.SIGKILL)
    assert alive == []


# ---- options checked at the boundary ----------------------------------------------------------

@pytest.mark.parametrize("spec,match", [("5:2", "empty range"), ("99:100", "out of range"), ("-1", "start at 0"),
                                        ("3", "out of range"), ("x", "expected a:b")])
def test_bad_shard_ranges_are_errors(spec, match):
    with pytest.raises(FerdataError, match=match):
        parse_shard_range(spec, 2)
    assert list(parse_shard_range("1:40", 2)) == [1] and list(parse_shard_range(":", 2)) == [0, 1]


def _render_cli(sample_dir, out, *extra):
    return CliRunner().invoke(main, ["render", str(sample_dir / "faces.h5"), "--backgrounds",
                                     str(sample_dir / "backgrounds"), "--per-face", "24", "--shard-size", "16",
                                     "--size", "64", "-o", str(out), *extra])


def test_cli_rejects_bad_render_and_lbp_options(sample_dir, tmp_path):
    for extra, code, words in [(["--shards", "5:2"], 1, "empty range"), (["--shards", "99:100"], 1, "out of range"),
                               (["--workers", "0"], 2, "--workers"), (["--set", "noise=-1"], 2, "noise"),
                               (["--set", "size=abc"], 2, "size must be an integer"),
                               (["--set", "per_face=1.5"], 2, "per_face"), (["--seed", "-1"], 2, "--seed"),
                               (["--size", "100000"], 2, "--size")]:
        r = _render_cli(sample_dir, tmp_path / "o", *extra)
        assert r.exit_code == code and words in r.output and "shard(s) made" not in r.output, (extra, r.output)
        assert "Traceback" not in r.output
    toml = tmp_path / "c.toml"
    toml.write_text('size = "big"\n')
    r = _render_cli(sample_dir, tmp_path / "o", "--config", str(toml))
    assert r.exit_code == 1 and "c.toml" in r.output and "size" in r.output and "'big'" in r.output
    r = CliRunner().invoke(main, ["lbp", str(tmp_path), "--workers", "0"])
    assert r.exit_code == 2 and "--workers" in r.output


def test_process_pool_keeps_a_bounded_window_of_tasks(monkeypatch):
    """Found in review: every task was submitted at once and every result kept until the end,
    so a render's parts (whole image buffers) piled up in the parent. Now at most 4 x workers
    are submitted and not yet taken, and each result is dropped once yielded."""
    import ferdata.parallel as par
    from fixtures._pool_tasks import square

    submitted, real = [], par.process_pool

    class Counting:
        def __init__(self, ex):
            self.ex = ex

        def __enter__(self):
            self.ex.__enter__()
            return self

        def __exit__(self, *a):
            return self.ex.__exit__(*a)

        def submit(self, fn, a):
            submitted.append(a)
            return self.ex.submit(fn, a)

    monkeypatch.setattr(par, "process_pool", lambda w: Counting(real(w)))
    it = par.run_tasks(square, range(40), "process", workers=2)
    taken = [next(it)]
    assert len(submitted) <= 4 * 2 and taken[0][1] == taken[0][0] ** 2
    for got in it:
        taken.append(got)
        assert len(submitted) - len(taken) <= 4 * 2
    assert sorted(taken) == [(i, i * i) for i in range(40)]


def test_lbp_on_numbas_workqueue_layer_does_not_abort(sample_dir, tmp_path):
    """Found in review: the kernel made ready on a thread ran at the same time as the first
    block's call; numba's workqueue layer aborts the process on concurrent use (exit 134 on
    two 40-sample shards at 96 px, 3 of 3 runs, before the fix)."""
    from ferdata.config import RenderConfig
    from ferdata.render.run import render

    out = tmp_path / "r"
    render(sample_dir / "faces.h5", sample_dir / "backgrounds", out, RenderConfig(per_face=40, size=96, shard_size=40))
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    res = subprocess.run([sys.executable, "-m", "ferdata", "lbp", str(out), "--workers", "2"],
                         env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "added to 2 shards" in res.stdout and not list(out.glob("*.tmp-*"))
