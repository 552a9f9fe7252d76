"""Trainers for the seeds' models (imports torch): ``fit(config, out)``, ``n_folds(config)``.

The contract the cross-validation runner relies on (docs/training.md):
``fit(cfg, out, resume=False)`` trains fold ``cfg.fold`` into ``out`` and returns the
dict written to ``out/eval.json``: ``{"val": report, "test": report, "best_epoch",
"epochs_run", "parameters"[, "noise"][, "noise_train"]}`` where ``report`` is
:func:`ferdata.train.metrics.classification_report`.
"""


def fit(cfg, out, resume=False, on_step=None, on_epoch=None, **hooks):
    """Train per a :class:`ferdata.train.config.TrainConfig` (see :func:`ferdata.train.loop.fit`;
    ``hooks``: its other callbacks, e.g. ``on_status``)."""
    from .loop import fit as _fit

    return _fit(cfg, out, resume=resume, on_step=on_step, on_epoch=on_epoch, **hooks)


def n_folds(cfg) -> int:
    """Number of folds of ``cfg``'s resolved split (kfold); 1 for official / holdout."""
    from .split import n_folds as _n

    return _n(cfg)
