"""A typo in the sample count is one error before any planning, not minutes at 100 % CPU."""
import time

import numpy as np
from click.testing import CliRunner

from ferdata.cli import main


def test_absurd_counts_are_refused_before_planning(sample_dir, tmp_path):
    faces, bgs = str(sample_dir / "faces.h5"), str(sample_dir / "backgrounds")
    t = time.monotonic()
    r = CliRunner().invoke(main, ["render", faces, "--backgrounds", bgs, "-o", str(tmp_path / "a"),
                                  "--per-face", "1000000000000"])
    assert r.exit_code == 2 and "--per-face" in r.output and "10000000" in r.output
    r = CliRunner().invoke(main, ["render", faces, "--backgrounds", bgs, "-o", str(tmp_path / "b"),
                                  "--per-face", "9000000", "--shard-size", "16"])
    assert r.exit_code == 1 and r.output.startswith("Error: ") and "1125000 shards" in r.output
    assert time.monotonic() - t < 30
    assert not list((tmp_path / "b").glob("shard-*"))


def test_the_library_bounds_shard_renders_but_not_live_ones(sample_dir, tmp_path):
    import pytest

    from ferdata.config import RenderConfig
    from ferdata.errors import FerdataError
    from ferdata.render.run import render

    with pytest.raises(FerdataError, match="at most 10000000 per face"):
        render(sample_dir / "faces.h5", sample_dir / "backgrounds", tmp_path / "c", RenderConfig(per_face=2**40))
    RenderConfig(per_face=2**40).validate()  # live renders (train_on=live) index an unbounded sample space


def test_verify_fails_an_unfinished_render_unless_partial(sample_dir, tmp_path):
    from ferdata.shards.inspect import verify

    faces, bgs = str(sample_dir / "faces.h5"), str(sample_dir / "backgrounds")
    out = tmp_path / "r"
    r = CliRunner().invoke(main, ["render", faces, "--backgrounds", bgs, "-o", str(out), "--size", "32",
                                  "--per-face", "30", "--shard-size", "16", "--shards", "0:2"])
    assert r.exit_code == 0, r.output
    res = verify(out)
    assert res["ok"] == 2 and res["missing"] == ["shard-000002.h5", "shard-000003.h5"]
    v = CliRunner().invoke(main, ["verify", str(out)])
    assert v.exit_code == 1 and "unfinished render: 2 of 4 shards not made (shard-000002.h5, shard-000003.h5)" in v.output
    v = CliRunner().invoke(main, ["verify", str(out), "--partial"])
    assert v.exit_code == 0 and "2 of 4 shard(s) ok, 0 problem(s)" in v.output and "2 not made yet" in v.output
    CliRunner().invoke(main, ["render", faces, "--backgrounds", bgs, "-o", str(out), "--size", "32",
                              "--per-face", "30", "--shard-size", "16"])
    assert CliRunner().invoke(main, ["verify", str(out)]).exit_code == 0


def test_bbox_is_numpys_box_of_the_nonzero_pixels():
    """compose._bbox (cv2.boundingRect since issue 23.4) against the numpy definition it
    replaced, on random masks of every shape (bool and not), empty ones included."""
    from ferdata.render.compose import _bbox

    def ref(mask):
        ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        return None if len(ys) == 0 else (ys[0], ys[-1] + 1, xs[0], xs[-1] + 1)

    rng = np.random.default_rng(3)
    for trial in range(3000):
        m = np.zeros((int(rng.integers(1, 140)), int(rng.integers(1, 140))), bool)
        for _ in range(int(rng.integers(0, 4))):
            y, x = rng.integers(0, m.shape[0]), rng.integers(0, m.shape[1])
            m[y:y + int(rng.integers(1, 40)), x:x + int(rng.integers(1, 40))] = True
        want = ref(m)
        for mask in (m, m.astype(np.uint8) * 255, m.astype(np.float32), m[:, ::-1][:, ::-1]):
            got = _bbox(mask)
            assert (got is None and want is None) or tuple(map(int, want)) == got, (trial, got, want)


def test_mean_is_numpys_mean():
    from ferdata.render.compose import _mean

    rng = np.random.default_rng(4)
    for n in list(range(1, 260)) + [1000, 4000, 5357, 16384]:
        for dt in (np.float32, np.float64):
            a = (rng.random(n) * 100).astype(dt)
            assert _mean(a) == float(a.mean()), (n, dt)
