"""ferdata export at the CLI: the success line, a progress bar fed by the work, one Error line
per bad input, Ctrl-C as one Interrupted line with the finished shards kept."""
import signal

import pytest
from click.testing import CliRunner

import ferdata.cli.export_cmd as export_cmd
from ferdata.cli import main
from ferdata.config import RenderConfig
from ferdata.render.run import render


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(r, *needles, codes=(1,)):
    assert r.exit_code in codes, (r.exit_code, r.output)
    errors = [ln for ln in r.output.splitlines() if ln.startswith("Error: ")]
    assert len(errors) == 1, r.output
    for n in needles:
        assert str(n) in errors[0], (n, errors[0])
    assert "Traceback" not in r.output
    return errors[0]


@pytest.fixture(scope="module")
def shards(sample_dir, tmp_path_factory):
    """A complete render (24 samples, 3 shards) and one with only its first shard."""
    root = tmp_path_factory.mktemp("export_cli")
    cfg = RenderConfig(size=64, per_face=12, shard_size=8)
    render(sample_dir / "faces.h5", sample_dir / "backgrounds", root / "full", cfg)
    render(sample_dir / "faces.h5", sample_dir / "backgrounds", root / "half", cfg, shards="0:1")
    return root


class Bar:
    """Stands in for the tqdm bar: records the total and the updates."""

    def __init__(self, on_update=None, **kw):
        self.total, self.n, self.kw, self.on_update = kw.get("total"), 0, kw, on_update
        self.totals = []

    def refresh(self):
        self.totals.append(self.total)

    def update(self, n):
        self.n += n
        if self.on_update:
            self.on_update(self)

    def close(self):
        pass


@pytest.mark.parametrize("to", ["webdataset", "imagefolder", "parquet"])
def test_export_success_line_and_progress(shards, tmp_path, monkeypatch, to):
    bars = []
    monkeypatch.setattr(export_cmd, "progress", lambda **kw: bars.append(Bar(**kw)) or bars[-1])
    r = invoke("export", shards / "full", "--to", to, "-o", tmp_path / "o")
    assert r.exit_code == 0, r.output
    assert f"{tmp_path / 'o'}: {to}, 3 shard(s) written, 0 already done, 24 samples (24 written at " in r.output
    assert bars[0].kw["unit"] == "sample" and bars[0].totals == [24] and bars[0].n == 24
    r = invoke("export", shards / "full", "--to", to, "-o", tmp_path / "o")
    assert r.exit_code == 0 and "0 shard(s) written, 3 already done, 24 samples (0 written)" in r.output
    assert bars[1].n == 24


def test_unknown_format_is_a_usage_error(shards, tmp_path):
    r = invoke("export", shards / "full", "--to", "zip", "-o", tmp_path / "o")
    one_error_line(r, "--to", "zip", codes=(2,))


def test_bad_outputs_are_one_error_line(shards, tmp_path):
    one_error_line(invoke("export", shards / "full", "--to", "webdataset", "-o", shards / "full" / "x"),
                   "inside the render folder")
    (tmp_path / "f").write_text("x")
    one_error_line(invoke("export", shards / "full", "--to", "parquet", "-o", tmp_path / "f"), "is a file")
    one_error_line(invoke("export", tmp_path / "nowhere", "--to", "parquet", "-o", tmp_path / "o"), "no manifest")
    one_error_line(invoke("export", shards / "full", "--to", "webdataset", "-o", tmp_path / "o",
                          "--faces", tmp_path / "none.h5"), "--faces", "no such face store")


def test_unfinished_render_needs_partial(shards, tmp_path):
    one_error_line(invoke("export", shards / "half", "--to", "webdataset", "-o", tmp_path / "o"),
                   "unfinished render: 2 of 3 shards", "shard-000001.h5", "--partial")
    r = invoke("export", shards / "half", "--to", "webdataset", "-o", tmp_path / "o", "--partial")
    assert r.exit_code == 0 and "1 shard(s) written" in r.output and "2 shard(s) not rendered yet" in r.output


def test_ctrl_c_is_one_interrupted_line(shards, tmp_path, monkeypatch):
    def stop(bar):
        if bar.n == 10:  # shard 1 of 3
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(export_cmd, "progress", lambda **kw: Bar(on_update=stop, **kw))
    r = invoke("export", shards / "full", "--to", "webdataset", "-o", tmp_path / "o")
    assert r.exit_code == 128 + signal.SIGINT, r.output
    assert "Interrupted (SIGINT) at shard-000001.h5" in r.output and "run the same command to continue" in r.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["ferdata_export.json", "shard-000000.tar"]
