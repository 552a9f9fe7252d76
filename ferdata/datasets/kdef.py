"""KDEF (Karolinska Directed Emotional Faces).

Layout (ROOT = the folder holding ``AF01/ ... BM35/``)::

    ROOT/AF01/AF01ANS.JPG

Name = session (A/B) + sex (F/M) + id (01-35) + expression + angle + ``.JPG``.
Expressions: AF afraid, AN angry, DI disgusted, HA happy, NE neutral, SA sad,
SU surprised (:data:`ferdata.labels.KDEF`). Angles: FL full left, HL half
left, S straight, HR half right, FR full right. Subject = sex + id
(``F01``): sessions A and B of one person share it. KDEF defines no split.
"""
from __future__ import annotations

import re
from typing import Iterable, Iterator, Optional

from .. import labels
from ..errors import DatasetFormatError
from .base import ErrorPolicy, FaceRecord, iter_images, register_reader, rel_source, require_dir

ANGLES = ("FL", "HL", "S", "HR", "FR")
NAME_RE = re.compile(r"^([AB])([FM])(\d{2})(AF|AN|DI|HA|NE|SA|SU)(FL|HL|S|HR|FR)$", re.IGNORECASE)


def parse_name(stem: str) -> dict:
    """``AF01ANS`` -> ``{"session": "A", "subject": "F01", "code": "AN", "angle": "S"}``."""
    m = NAME_RE.match(stem)
    if not m:
        raise ValueError(f"file name {stem!r} is not a KDEF name "
                         f"(session A/B, F/M, 2-digit id, AF/AN/DI/HA/NE/SA/SU, FL/HL/S/HR/FR)")
    session, sex, num, code, angle = (g.upper() for g in m.groups())
    return {"session": session, "subject": sex + num, "code": code, "angle": angle}


def _angles(angles) -> set:
    if isinstance(angles, str):
        angles = ANGLES if angles.strip().lower() == "all" else angles.split(",")
    out = {str(a).strip().upper() for a in angles}
    bad = sorted(out - set(ANGLES))
    if bad or not out:
        raise DatasetFormatError(f"angles={','.join(sorted(out))}: unknown angle "
                                 f"{bad[0] if bad else '(none)'}; expected some of {', '.join(ANGLES)} or all")
    return out


@register_reader("kdef")
def read_kdef(root, *, angles: Iterable[str] | str = "S", on_error: str = "raise",
              skipped: Optional[list] = None) -> Iterator[FaceRecord]:
    """Read KDEF images.

    Parameters
    ----------
    root : path
        The folder holding the per-session-and-person folders ``AF01/`` ... ``BM35/``.
    angles : str or iterable of str
        Camera angles to keep: ``"S"`` (frontal, default), ``"HL,S,HR"``, ``"all"``.
        Other angles are left out silently (by choice, not an error).
    on_error : {"raise", "skip"}
        An image whose name is not a KDEF name raises a DatasetFormatError
        naming it, or is skipped and recorded.
    skipped : list, optional
        Receives ``(source, reason)`` for skipped files.

    Yields
    ------
    FaceRecord
        ``path``, ``subject`` ("F01"), ``split=""``,
        ``extra={"session", "angle", "kdef_code"}``.
    """
    policy = ErrorPolicy(on_error, skipped)
    keep = _angles(angles)
    root = require_dir(root, "KDEF")
    for path in iter_images(root):
        if "__MACOSX" in path.parts:
            continue
        source = rel_source(path, root)
        try:
            info = parse_name(path.stem)
        except ValueError as exc:
            policy.error(str(path), source, str(exc))
            continue
        if info["angle"] not in keep:
            continue
        yield FaceRecord(source=source, label=labels.CLASS_INDEX[labels.KDEF[info["code"]]],
                         subject=info["subject"], split="", path=path,
                         extra={"session": info["session"], "angle": info["angle"], "kdef_code": info["code"]})
