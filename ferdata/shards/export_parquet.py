"""``ferdata export --to parquet``: one Parquet file per shard (pyarrow, the ``export`` extra).

Columns: ``key``, ``image`` and ``mask`` as Hugging Face's ``Image`` layout (a struct of
``bytes`` and ``path``; the image bytes as stored, the mask a PNG), ``label`` (canonical
index), ``class_name``, ``subject``, ``split``, ``source``, ``face_index``, ``index``,
``sample``, ``master_seed``, ``landmarks`` (list<float32>, 136 values x0, y0, x1, …;
null where unknown), ``params`` (a struct, one float32 per render parameter),
``background``, ``bg_box`` (list<int32>) and ``shard``. The schema's ``huggingface``
metadata declares ``image``/``mask`` as ``Image`` and ``label`` as ``ClassLabel`` over
``ferdata.labels.CLASSES``, so ``datasets.load_dataset("parquet", ...)`` decodes them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

from ..atomic import atomic_write
from ..errors import FerdataError
from ..labels import CLASSES
from ..signals import check

EXT = ".parquet"
_INTS = {"face_index": "int32", "index": "int64", "sample": "int64", "master_seed": "int64", "background": "int64"}
_STRS = ("class_name", "subject", "split", "source", "shard")


def pyarrow():
    """pyarrow, or one FerdataError naming the extra that installs it."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise FerdataError("--to parquet needs pyarrow: pip install 'ferdata[export]'") from None
    return pa, pq


def outputs(name: str) -> list[str]:
    return [Path(name).stem + EXT]


def _schema(pa, param_names):
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    fields = [("key", pa.string()), ("image", image), ("mask", image), ("label", pa.int64())]
    fields += [(k, pa.string()) for k in _STRS[:4]]
    fields += [(k, getattr(pa, t)()) for k, t in _INTS.items()]
    fields += [("landmarks", pa.list_(pa.float32())),
               ("params", pa.struct([(k, pa.float32()) for k in param_names])),
               ("bg_box", pa.list_(pa.int32())), ("shard", pa.string())]
    hf = {"info": {"features": {"image": {"_type": "Image"}, "mask": {"_type": "Image"},
                                "label": {"names": list(CLASSES), "_type": "ClassLabel"}}}}
    return pa.schema(fields, metadata={"huggingface": json.dumps(hf)})


def _row(s: dict) -> dict:
    m = s["meta"]
    row = {k: m[k] for k in ("label", *_STRS, *_INTS, "landmarks", "params", "bg_box")}
    row["key"] = s["key"]
    row["image"] = {"bytes": s["image"], "path": f"{s['key']}.{s['image_ext']}"}
    row["mask"] = {"bytes": s["mask"], "path": f"{s['key']}.mask.png"}
    return row


def write_shard(name: str, samples: Iterable[dict], out: Path, tick: Callable[[int], None]) -> int:
    """Write shard ``name``'s samples to its Parquet file (atomically); returns the count."""
    pa, pq = pyarrow()
    rows, names = [], None
    for s in samples:
        check(f"{name}, sample {s['key']}")
        rows.append(_row(s))
        names = names or list(s["meta"]["params"])
        tick(1)
    schema = _schema(pa, names or [])
    table = pa.Table.from_pylist(rows, schema=schema)
    atomic_write(out / outputs(name)[0], lambda fh: pq.write_table(table, fh, compression="zstd"))
    return len(rows)
