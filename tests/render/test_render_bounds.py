"""A typo in the sample count is one error before any planning, not minutes at 100 % CPU."""
import time

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
