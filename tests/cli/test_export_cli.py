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
    """Stands in for StageBar: records the events."""

    def __init__(self, desc, unit="it", on_event=None):
        self.desc, self.unit, self.events, self.on_event = desc, unit, [], on_event

    def __call__(self, event):
        self.events.append(dict(event))
        if self.on_event:
            self.on_event(event)

    def close(self):
        pass


@pytest.mark.parametrize("to", ["webdataset", "imagefolder", "parquet"])
def test_export_success_line_and_progress(shards, tmp_path, monkeypatch, to):
    bars = []
    monkeypatch.setattr(export_cmd, "StageBar", lambda *a, **kw: bars.append(Bar(*a, **kw)) or bars[-1])
    r = invoke("export", shards / "full", "--to", to, "-o", tmp_path / "o")
    assert r.exit_code == 0, r.output
    assert f"{tmp_path / 'o'}: {to}, 3 shard(s) written, 0 already done, 24 samples (24 written at " in r.output
    assert bars[0].desc == f"export {to}" and bars[0].unit == "sample"
    assert bars[0].events[-1] == {"stage": "done", "done": 24, "total": 24}
    assert {e["stage"] for e in bars[0].events} >= {f"exporting shard-00000{k}.h5" for k in range(3)}
    r = invoke("export", shards / "full", "--to", to, "-o", tmp_path / "o")
    assert r.exit_code == 0 and "0 shard(s) written, 3 already done, 24 samples (0 written)" in r.output
    assert bars[1].events[-1] == {"stage": "done", "done": 24, "total": 24}


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
    def stop(event):
        if event["stage"] == "exporting shard-000001.h5":  # shard 1 of 3 begins
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(export_cmd, "StageBar", lambda *a, **kw: Bar(*a, on_event=stop, **kw))
    r = invoke("export", shards / "full", "--to", "webdataset", "-o", tmp_path / "o")
    assert r.exit_code == 128 + signal.SIGINT, r.output
    assert "Interrupted (SIGINT) at shard-000001.h5, sample 000000008" in r.output and "run the same command to continue" in r.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["ferdata_export.json", "shard-000000.tar"]
