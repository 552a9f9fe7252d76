"""Progress that tells the truth (issue 22.1): totals, rate, ETA, what a command waits for,
with a terminal (a bar) and without one (a plain line now and then, never bar garbage)."""
import io
import time

from click.testing import CliRunner

from ferdata.cli import main
from ferdata.cli._progress import StageBar, status_line


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_status_line_has_total_rate_eta_and_stage():
    line = status_line("render", "sample", 8192, 18462, 1520.0, "rendering")
    assert line == "render: 8192 of 18462 samples (44 %), 1520/s, ETA 0:07, rendering"
    assert status_line("lbp", "shard", 0, None, None, "compiling LBP kernels") == \
        "lbp: 0 shards, compiling LBP kernels"
    assert "ETA 1:01:40" in status_line("x", "it", 0, 3700, 1.0)


def test_without_a_terminal_a_waiting_stage_is_announced_once_and_lines_repeat():
    out = io.StringIO()
    bar = StageBar("lbp", unit="shard", every=0.5, file=out, announce=0.2)
    bar({"stage": "compiling LBP kernels", "done": 0, "total": 4})
    time.sleep(1.3)   # the ticker announces the wait without a new event
    bar({"stage": "", "done": 2, "total": 4})
    time.sleep(0.6)
    bar({"stage": "", "done": 3, "total": 4})
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and "|" not in out.getvalue()
    assert sum("compiling LBP kernels" in ln for ln in lines) >= 1
    assert lines[0] == "lbp: 0 of 4 shards (0 %), compiling LBP kernels"
    assert any(ln.startswith("lbp: 2 of 4 shards (50 %)") or ln.startswith("lbp: 3 of 4 shards (75 %)")
               for ln in lines)


def test_on_a_terminal_the_bar_has_a_total_and_moves_while_waiting():
    out = _Tty()
    bar = StageBar("render", unit="sample", file=out)
    bar({"stage": "starting 2 workers", "done": 0, "total": 200})
    time.sleep(2.3)
    bar({"stage": "rendering", "done": 100, "total": 200})
    bar.close()
    text = out.getvalue().replace("\r", "\n")
    assert "render (starting 2 workers):   0%" in text and "0/200" in text
    assert "[00:02<" in text                       # redrawn while nothing finished
    assert "100/200" in text and "render (rendering):  50%" in text


def test_render_piped_prints_no_bar_and_the_summary(sample_dir, tmp_path):
    res = CliRunner().invoke(main, ["render", str(sample_dir / "faces.h5"), "--backgrounds",
                                    str(sample_dir / "backgrounds"), "-o", str(tmp_path / "r"),
                                    "--per-face", "20", "--size", "64", "--shard-size", "16"])
    assert res.exit_code == 0, res.output
    assert "\r" not in res.output and "sample/s]" not in res.output
    assert res.output.strip().splitlines()[-1].startswith(f"{tmp_path / 'r'}: 3 shard(s) made")


def test_a_total_counted_in_the_background_keeps_the_work_done():
    from ferdata.cli._progress import count_in_background

    out = io.StringIO()
    bar = StageBar("ingest ckplus", unit="face", every=1e9, file=out)
    bar({"stage": "loading the landmark model", "done": 0})
    bar({"stage": "", "done": 3})
    count_in_background(lambda: iter(range(40)), bar).join(5)
    assert (bar.done, bar.total) == (3, 40)
    bar({"done": 4})
    assert bar.line().startswith("ingest ckplus: 4 of 40 faces (10 %)")
    count_in_background(lambda: (1 / 0 for _ in range(3)), bar).join(5)   # a failed count: no total change
    assert bar.total == 40
    bar.close()


def test_ingest_piped_prints_no_bar(tmp_path):
    res = CliRunner().invoke(main, ["ingest", "sample", "-o", str(tmp_path / "f.h5")])
    assert res.exit_code == 0, res.output
    assert "\r" not in res.output and "face/s]" not in res.output
    assert res.output.strip().splitlines()[-1].startswith(f"{tmp_path / 'f.h5'}: ")


def test_a_closed_bar_prints_nothing_more():
    """Found in review: a total counted after ingest closed its bar printed a stray line."""
    out = io.StringIO()
    bar = StageBar("ingest x", unit="face", every=0, file=out)
    bar({"stage": "", "done": 3})
    bar.close()
    before = out.getvalue()
    bar({"total": 10})
    assert out.getvalue() == before


def test_the_background_count_closes_its_reader_and_stops_when_the_command_ended():
    """Found in CI: a count still reading a dataset csv when the ingest ended left the file to
    the garbage collector (ResourceWarning)."""
    from ferdata.cli._progress import count_in_background

    closed = []

    def reader(n):
        try:
            for i in range(n):
                yield i
        finally:
            closed.append(n)

    bar = StageBar("ingest x", unit="face", every=1e9, file=io.StringIO())
    count_in_background(lambda: reader(5), bar).join(5)
    assert closed == [5] and bar.total == 5
    bar.close()
    count_in_background(lambda: reader(10 ** 9), bar).join(5)   # a closed bar: stops at once
    assert closed == [5, 10 ** 9]


def test_read_dataset_close_closes_the_readers_file(tmp_path):
    from ferdata.datasets import read_dataset
    from fixtures import dataset_fixtures as fx

    root = fx.make_fer2013(tmp_path / "f", fx.sample_faces(), n_rows=3)
    it = read_dataset("fer2013", root)
    next(it)
    frame = it.gi_frame   # the reader's generator, suspended inside its `with open(...)`
    it.close()            # itertools.chain had no close()
    assert frame is None or it.gi_frame is None
    inner = [v for v in frame.f_locals.values() if hasattr(v, "gi_frame")] if frame is not None else []
    assert all(g.gi_frame is None for g in inner)   # closed too: its file is closed now
