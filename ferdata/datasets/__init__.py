"""Dataset readers: one per source format, each an iterator of :class:`FaceRecord`.

>>> from ferdata.datasets import read_dataset
>>> for rec in read_dataset("jaffe", "/data/jaffedbase"):  # doctest: +SKIP
...     print(rec.source, rec.label, rec.subject)

Readers (``READERS[name](root, **options)``): ``ckplus``, ``fer2013``, ``ferplus``,
``jaffe``, ``bu3dfe``, ``rafd``, ``affectnet``, ``rafdb``, ``kdef``, ``expw``,
``folder`` — see docs/datasets.md.
Every reader takes ``on_error="raise"|"skip"`` and ``skipped=`` (a list that
receives ``(source, reason)`` for every item left out).
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Iterator

from ..errors import DatasetFormatError
from .base import READERS, ErrorPolicy, FaceRecord, register_reader
from . import affectnet, bu3dfe, ckplus, expw, fer2013, ferplus, folder, jaffe, kdef, rafd, rafdb  # noqa: F401
from .affectnet import read_affectnet
from .bu3dfe import read_bu3dfe
from .ckplus import read_ckplus
from .expw import read_expw
from .fer2013 import read_fer2013
from .ferplus import read_ferplus
from .folder import read_folder
from .jaffe import read_jaffe
from .kdef import read_kdef
from .rafd import read_rafd
from .rafdb import read_rafdb

from . import sample  # noqa: F401,E402  (the built-in sample reader)

__all__ = [
    "READERS", "FaceRecord", "ErrorPolicy", "register_reader", "read_dataset", "reader_options",
    "read_affectnet", "read_bu3dfe", "read_ckplus", "read_fer2013", "read_ferplus",
    "read_folder", "read_jaffe", "read_rafd", "read_rafdb", "read_kdef", "read_expw",
]


def reader_options(name: str) -> dict:
    """The keyword options of reader ``name`` and their defaults."""
    params = list(inspect.signature(_get(name)).parameters.values())[1:]  # after root
    return {p.name: p.default for p in params
            if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)}


def _get(name: str):
    if name not in READERS:
        raise DatasetFormatError(f"unknown dataset {name!r}; known: {', '.join(sorted(READERS))}")
    return READERS[name]


def read_dataset(name: str, root, **options) -> Iterator[FaceRecord]:
    """Read dataset ``name`` from ``root``: an iterator of :class:`FaceRecord`.

    Unlike calling a reader directly, this checks the options and reads the first
    record at once, so a missing folder, a wrong format or an empty dataset raises
    here rather than at the first ``next()``.

    Parameters
    ----------
    name : str
        A key of :data:`READERS` (``ckplus``, ``fer2013``, ``ferplus``, ``jaffe``,
        ``bu3dfe``, ``rafd``, ``affectnet``, ``rafdb``, ``kdef``, ``expw``, ``folder``, ...).
    root : path
        The dataset folder (or csv file for ``fer2013`` / ``ferplus``).
    **options
        Reader options (see docs/datasets.md), including ``on_error`` and ``skipped``.

    Raises
    ------
    DatasetFormatError
        Unknown dataset name or option, bad input, or no labelled image at all
        (``"no labelled images found under ROOT"``).
    """
    reader = _get(name)
    known = reader_options(name)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD
                    for p in inspect.signature(reader).parameters.values())
    unknown = sorted(set(options) - set(known))
    if unknown and not takes_any:
        raise DatasetFormatError(
            f"dataset {name!r} has no option {unknown[0]!r}; options: {', '.join(known) or 'none'}")
    it = reader(root, **options)
    first = next(it, None)
    if first is None:
        skipped = options.get("skipped")
        note = f" ({len(skipped)} items skipped)" if skipped else ""
        raise DatasetFormatError(f"no labelled images found under {Path(root)}{note}")
    return _chained(first, it)


def _chained(first, it):
    """``first`` then the rest of ``it``; closing this generator closes the reader's (its
    open csv or file handles are released at once, not when garbage-collected)."""
    try:
        yield first
        yield from it
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
