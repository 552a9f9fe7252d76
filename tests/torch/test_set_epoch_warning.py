"""ShardIterableDataset warns when a shuffled epoch is read again without set_epoch (issue 22.8):
in the main process and from DataLoader workers; not after set_epoch, not without shuffle."""
import copy
import os
import warnings

import numpy as np
import pytest
from torch.utils.data import DataLoader

from ferdata.torch import ShardIterableDataset

MSG = r"iterated again without set_epoch\(\).*ds\.set_epoch\(epoch\)"


def _passes(ds, n, set_epoch=None):
    """``n`` passes over ``ds`` in this process; the warnings they raised."""
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        orders = []
        for e in range(n):
            if set_epoch is not None:
                ds.set_epoch(set_epoch(e))
            orders.append(np.concatenate([b["index"].numpy() for b in ds] or [np.zeros(0, np.int64)]))
    return [w for w in got if "set_epoch" in str(w.message)], orders


def test_second_pass_without_set_epoch_warns_once(renders):
    ds = ShardIterableDataset(renders.raw, fields=("index",), block=4, buffer=8, batch_size=16)
    got, orders = _passes(ds, 3)
    assert len(got) == 1 and got[0].category is UserWarning  # the second pass; once per dataset
    assert np.array_equal(orders[0], orders[1])  # what it warns about: the same order again
    ds2 = ShardIterableDataset(renders.raw, fields=("index",), block=4, buffer=8)
    list(ds2)
    with pytest.warns(UserWarning, match=MSG):
        list(ds2)


def test_no_warning_after_set_epoch_or_without_shuffle(renders):
    ds = ShardIterableDataset(renders.raw, fields=("index",), block=4, buffer=8, batch_size=16)
    got, orders = _passes(ds, 3, set_epoch=lambda e: e)
    assert got == [] and not np.array_equal(orders[0], orders[1])
    got, _ = _passes(ds, 2, set_epoch=lambda e: 5)  # replaying an epoch on purpose
    assert got == []
    plain = ShardIterableDataset(renders.raw, fields=("index",), shuffle=False, batch_size=16)
    assert _passes(plain, 3)[0] == []
    # a resume point loaded between passes is a set_epoch
    ds3 = ShardIterableDataset(renders.raw, fields=("index",), batch_size=16)
    list(ds3)
    ds3.load_state_dict(ds3.state_dict())
    assert _passes(ds3, 1)[0] == []


def test_copies_do_not_share_the_count(renders):
    ds = ShardIterableDataset(renders.raw, fields=("index",), batch_size=16)
    list(ds)
    other = copy.deepcopy(ds)  # a plain copy: what the original saw is copied, then separate
    assert len(_passes(other, 1)[0]) == 1
    ds.set_epoch(0)
    assert _passes(ds, 1)[0] == []


@pytest.mark.parametrize("persistent", [False, True])
def test_dataloader_workers_warn_from_worker_zero(renders, capfd, persistent):
    """In workers the state lives in shared memory: worker 0 sees the main process's
    set_epoch calls and the previous pass, and prints the warning (once) on its stderr."""
    ds = ShardIterableDataset(renders.jpeg, fields=("index",), block=4, buffer=8, batch_size=8)
    with warnings.catch_warnings():
        # pytest records warnings in a list, which a forked worker would keep to itself:
        # show them on file descriptor 2 instead, as Python does outside pytest
        warnings.simplefilter("default")
        warnings.showwarning = lambda m, c, *a, **k: os.write(2, f"{c.__name__}: {m}\n".encode())
        dl = DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="fork",
                        persistent_workers=persistent)
        for epoch in range(3):
            ds.set_epoch(epoch)
            assert np.array_equal(np.concatenate([b["index"].numpy() for b in dl]), ds.epoch_order(epoch))
        assert "set_epoch" not in capfd.readouterr().err
        for _ in range(3):  # forgot set_epoch: epoch 2 again, twice
            list(dl)
        err = capfd.readouterr().err
        assert err.count("iterated again without set_epoch()") == 1, err
        list(ds)  # the main process shares the flag: warned already
        assert "set_epoch" not in capfd.readouterr().err
