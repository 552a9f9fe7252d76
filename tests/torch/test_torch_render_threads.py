"""The torch renderer's CPU threads: chunks side by side on single-threaded workers give the
same batch, and renders survive a fork (docs/rendering.md, "The torch renderer")."""
import numpy as np
import torch

from fixtures.torch_renders import _pair


def test_cpu_chunks_give_the_same_batch(sample_dir, tmp_path):
    """Chunks rendered side by side on single-threaded workers equal the batch rendered at once
    on the calling thread; the caller's torch thread count is left as it was."""
    import threading

    _, tr = _pair(sample_dir, tmp_path)
    idx = np.arange(100) * 5
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        whole, chunked = tr._render(idx), tr.render(idx)      # 100 > 2 chunks: 4 pieces on 2 workers
        seen = []
        t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        t.start()
        t.join()
        assert torch.get_num_threads() == 2 and seen == [2]
    finally:
        torch.set_num_threads(before)
    assert set(whole) == set(chunked)
    assert all(torch.equal(whole[k], chunked[k]) for k in whole)


def test_chunk_pool_works_in_a_forked_child():
    """A child forked after the parent used the chunk pool (a DataLoader worker) gets its own
    worker threads instead of waiting forever on the parent's, which did not survive the fork."""
    import multiprocessing as mp

    from ferdata.torch._cpu_pool import map_chunks

    before = torch.get_num_threads()
    try:
        assert map_chunks(_double, [1, 2, 3], 2) == [2, 4, 6]       # the parent's pool now exists
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=_map_into, args=(q,))
        p.start()
        got = q.get(timeout=30)
        p.join(10)
    finally:
        torch.set_num_threads(before)
    assert got == [2, 4, 6]


def _double(x):
    return 2 * x


def _map_into(q):
    from ferdata.torch._cpu_pool import map_chunks

    q.put(map_chunks(_double, [1, 2, 3], 2))


def test_renders_in_a_child_forked_after_parallel_torch_ops(sample_dir, tmp_path):
    """GNU OpenMP cannot start threads in a child forked after the parent ran parallel ops
    (PyTorch issue 17199): the child's first parallel op hangs. The renderer used to hang
    there; in such a child it now renders on one thread, with the same samples."""
    import multiprocessing as mp

    _, tr = _pair(sample_dir, tmp_path)
    idx = np.arange(80) * 7
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.randn(384, 384)
        for _ in range(3):
            x = torch.tanh(x @ x)                      # the parent's OpenMP threads now exist
        ref = tr.render(idx)
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=_render_into, args=(tr, idx, q))
        p.start()
        try:
            got = q.get(timeout=120)
        finally:
            p.join(5)
            if p.is_alive():
                p.kill()
    finally:
        torch.set_num_threads(before)
    assert got["threads"] == 2                         # the child's setting, restored after the call
    for k in ("image", "mask", "landmarks"):
        np.testing.assert_array_equal(ref[k].numpy(), got[k])


def _render_into(tr, idx, q):
    out = tr.render(idx)
    got = {k: out[k].numpy() for k in ("image", "mask", "landmarks")}  # plain pickles
    q.put(dict(got, threads=torch.get_num_threads()))
