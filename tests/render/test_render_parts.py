"""Shards made of parts (issue 23.3): every worker busy on a small render, same bytes."""
import numpy as np
import pytest

from ferdata.config import RenderConfig
from ferdata.errors import ShardError
from ferdata.render import run as render_run
from ferdata.render.parts import MIN_PART, PARTS_PER_WORKER, Assembly, part_limit, plan_parts
from ferdata.render.run import RenderJob, get_context, render
from ferdata.shards.manifest import load_manifest
from fixtures.shard_hashes import dataset_hashes


def test_plan_covers_every_sample_once_in_order():
    spans = [(0, 8192), (1, 8192), (2, 78)]
    parts = plan_parts(spans, workers=2, limit=512)
    for k, n in spans:
        mine = [(o, m) for s, o, m in parts if s == k]
        assert mine[0][0] == 0 and sum(m for _, m in mine) == n
        assert all(a + m == b for (a, m), (b, _) in zip(mine, mine[1:]))
        assert max(m for _, m in mine) <= 512
    assert len({(k, o) for k, o, _ in parts}) == len(parts)


def test_one_shard_is_cut_for_every_worker():
    """``--per-face 3000`` on the sample: one shard, which alone kept one of 2 workers busy."""
    parts = plan_parts([(0, 6000)], workers=2, limit=512)
    assert len(parts) >= PARTS_PER_WORKER * 2
    tiny = plan_parts([(0, 40)], workers=8, limit=512)
    assert len(tiny) == 2   # never cut into pieces of fewer than about MIN_PART samples
    assert plan_parts([(0, 6000)], workers=1, limit=512) == plan_parts([(0, 6000)], workers=1, limit=512)
    assert len(plan_parts([(0, 6000)], workers=1, limit=512)) == -(-6000 // 512)


def test_part_limit_shrinks_with_the_crop():
    assert part_limit(128) == 512 and part_limit(256) == 128 and part_limit(2048) == MIN_PART


def test_parts_joined_in_any_order_give_the_shard_of_one_pass(sample_dir, tmp_path):
    cfg = RenderConfig(per_face=30, shard_size=60, size=64, encoding="jpeg").validate().resolved()
    job = RenderJob(str(sample_dir / "faces.h5"), str(sample_dir / "backgrounds"), str(tmp_path), cfg)
    ctx = get_context(job)
    whole = ctx.render_part(0, 60)
    asm = Assembly(ctx.new_buffer)
    pieces = [(o, m) for _, o, m in plan_parts([(0, 60)], workers=4, limit=7)]
    got = None
    for o, m in reversed(pieces):
        assert got is None
        got = asm.add(0, 60, o, ctx.render_part(o, m), 0.1)
    buf, seconds = got
    assert asm.pending == [] and seconds == pytest.approx(0.1 * len(pieces))
    assert buf.blobs == whole.blobs
    for name in buf.FIELDS:
        np.testing.assert_array_equal(getattr(buf, name), getattr(whole, name))


def test_a_part_that_does_not_fit_is_refused(sample_dir, tmp_path):
    cfg = RenderConfig(per_face=10, shard_size=20, size=64).validate().resolved()
    ctx = get_context(RenderJob(str(sample_dir / "faces.h5"), str(sample_dir / "backgrounds"), str(tmp_path), cfg))
    buf = ctx.new_buffer(20)
    with pytest.raises(ShardError, match="does not fit"):
        buf.put(15, ctx.render_part(0, 10))


@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
def test_one_shard_on_two_workers_is_the_same_bytes(sample_dir, tmp_path, encoding):
    faces, bg = sample_dir / "faces.h5", sample_dir / "backgrounds"
    cfg = RenderConfig(per_face=100, shard_size=256, size=64, encoding=encoding)
    events = []
    r1 = render(faces, bg, tmp_path / "w1", cfg, workers=1)
    r2 = render(faces, bg, tmp_path / "w2", cfg, workers=2, on_progress=events.append)
    assert r1["num_shards"] == r2["num_shards"] == 1 and r2["samples"] == 200
    assert dataset_hashes(tmp_path / "w1") == dataset_hashes(tmp_path / "w2")
    assert load_manifest(tmp_path / "w2")["shards"]["shard-000000.h5"]["seconds"] > 0
    # progress from the work itself: a total up front, then several steps within the one shard
    assert events[0]["stage"].startswith("loading") and events[1]["total"] == 200
    done = [e["done"] for e in events if e["stage"] == "rendering"]
    assert len(set(done)) >= PARTS_PER_WORKER * 2 - 1 and done[-1] == 200
    assert done == sorted(done)


def test_a_failing_part_keeps_finished_shards_and_writes_no_partial_one(sample_dir, tmp_path, monkeypatch):
    faces, bg = sample_dir / "faces.h5", sample_dir / "backgrounds"
    cfg = RenderConfig(per_face=20, shard_size=10, size=64)
    real = render_run._part_task

    def flaky(arg):
        if arg[1] == 2 and arg[2] > 0:   # shard 2, its second part
            raise RuntimeError("boom")
        return real(arg)

    monkeypatch.setattr(render_run, "_part_task", flaky)
    monkeypatch.setattr(render_run, "part_limit", lambda size: 4)
    with pytest.raises(RuntimeError, match="boom"):
        render(faces, bg, tmp_path / "r", cfg, workers=1)
    listed = set(load_manifest(tmp_path / "r")["shards"])
    assert listed == {"shard-000000.h5", "shard-000001.h5"}
    assert sorted(p.name for p in (tmp_path / "r").glob("shard-*")) == sorted(listed)
    monkeypatch.setattr(render_run, "_part_task", real)
    res = render(faces, bg, tmp_path / "r", cfg, workers=1)
    assert res["shards_skipped"] == 2 and res["shards_made"] == 2


def test_a_parts_parameters_are_the_per_sample_draws(sample_dir, tmp_path):
    from ferdata.render.params import sample_params, sample_rng

    cfg = RenderConfig(per_face=40, size=64, perspective=0.05).validate().resolved()
    ctx = get_context(RenderJob(str(sample_dir / "faces.h5"), str(sample_dir / "backgrounds"), str(tmp_path), cfg))
    got = ctx.part_params(17, 30)
    want = np.stack([sample_params(sample_rng(cfg.seed, g % ctx.n_faces, g // ctx.n_faces), cfg)
                     for g in range(17, 47)])
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_the_last_parts_are_cut_smaller_so_no_worker_finishes_alone():
    """The job's last ``workers`` parts are cut in TAIL_SPLIT pieces: at the end a worker
    waits for at most a small piece, not a whole part (found in issue 23.4's timeline: one
    core idle for the last 0.6 s of a 7 s render)."""
    from ferdata.render.parts import TAIL_SPLIT

    for spans, workers in (([(0, 6000)], 2), ([(0, 8192), (1, 8192), (2, 2078)], 2), ([(0, 8192)], 3)):
        parts = plan_parts(spans, workers=workers, limit=512)
        body, tail = parts[:-workers * TAIL_SPLIT], parts[-workers * TAIL_SPLIT:]
        assert max(m for *_, m in tail) * (TAIL_SPLIT - 1) < min(m for *_, m in body)
        assert sum(m for *_, m in parts) == sum(n for _, n in spans)
    assert plan_parts([(0, 6000)], workers=1, limit=512)[-1][2] > 256   # one worker: nothing to balance
    # parts already under 2 x MIN_PART are not cut further
    assert [m for *_, m in plan_parts([(0, 100)], workers=2, limit=512)] == [25, 25, 25, 25]
