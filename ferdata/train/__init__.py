"""Trainers for the seeds' models (imports torch): ``fit(config, out)``."""


def fit(cfg, out, resume=False, on_step=None):
    """Train per a :class:`ferdata.config.TrainConfig` (see :func:`ferdata.train.loop.fit`)."""
    from .loop import fit as _fit

    return _fit(cfg, out, resume=resume, on_step=on_step)
