"""What a shard dataset reads (:class:`Select`) and how it hands samples out (:class:`Decode`).

Both are small frozen dataclasses, validated where they are used; the shard datasets are
built from them (``ShardIterableDataset(path, select=Select(split="train"),
decode=Decode(fields=("image", "label"), resize=64))``). The datasets still take the
same settings as keyword arguments (``subjects=…``, ``resize=…``): :func:`specs_from`
turns those into the two specs (``docs/torch.md``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional


@dataclass(frozen=True)
class Select:
    """Which samples: subjects (names), faces (indices into the face store), a split of the
    face store ``faces``; and which shards are accepted (verify hashes, a partial render,
    HDF5 file locking)."""

    subjects: Optional[Iterable[str]] = None
    face_indices: Any = None
    split: Optional[str] = None
    faces: Any = None
    verify: bool = False
    allow_partial: bool = False
    locking: Optional[bool] = None


@dataclass(frozen=True)
class Decode:
    """What each sample holds and how it is made: fields, resize, gray, label mapping, a
    per-sample transform, and whether JPEGs may be decoded at reduced size."""

    fields: Iterable[str] = ("image", "label")
    transform: Optional[Callable] = None
    resize: Any = None
    gray: bool = False
    label_map: Any = "canonical"
    reduced_decode: bool = True


_SELECT = {f.name for f in dataclasses.fields(Select)}
_DECODE = {f.name for f in dataclasses.fields(Decode)}


def specs_from(owner: str, select: Optional[Select], decode: Optional[Decode], fields, legacy: dict):
    """``(Select, Decode)`` from the specs and/or the old keyword arguments (``legacy``).

    A keyword that is neither is a TypeError naming it, as Python's own; a keyword given
    together with the spec that holds it is ambiguous and refused.
    """
    unknown = sorted(set(legacy) - _SELECT - _DECODE)
    if unknown:
        raise TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}")
    if not isinstance(select, (Select, type(None))):
        raise TypeError(f"{owner}(): select must be a ferdata.torch.Select, got {type(select).__name__}")
    if not isinstance(decode, (Decode, type(None))):
        raise TypeError(f"{owner}(): decode must be a ferdata.torch.Decode, got {type(decode).__name__}")
    sel_kw = {k: v for k, v in legacy.items() if k in _SELECT}
    dec_kw = {k: v for k, v in legacy.items() if k in _DECODE}
    if fields is not None:
        dec_kw["fields"] = fields
    if select is not None and sel_kw:
        raise TypeError(f"{owner}(): give {', '.join(sorted(sel_kw))} inside select=, not beside it")
    if decode is not None and dec_kw:
        raise TypeError(f"{owner}(): give {', '.join(sorted(dec_kw))} inside decode=, not beside it")
    return select or Select(**sel_kw), decode or Decode(**dec_kw)
