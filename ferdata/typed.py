"""Typed, validated dataclass configs: every value checked against its field's annotation.

Config values arrive as TOML values, JSON-parsed ``--set KEY=VALUE`` strings, checkpoint
JSON or Python calls. :func:`coerce_fields` turns such a mapping into values of the
annotated types (``int``, ``float``, ``bool``, ``str``, ``tuple``, ``dict``,
``Optional[...]``) or raises one :class:`FerdataError` naming the source, the key and the
bad value. :class:`TypedConfig` applies the same coercion whenever a dataclass config is
constructed, and :func:`check_ranges` checks numeric bounds (used by each config's
``validate()``).
"""
from __future__ import annotations

import math
import numbers
import types
import typing
from dataclasses import fields

from .errors import FerdataError

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null"}


class _Bad(Exception):
    """Internal: the value does not fit; carries what was expected."""


def _scalar(text: str):
    """A list element given as text: int, else float, else the text itself."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _to_int(value):
    if isinstance(value, bool):
        raise _Bad("an integer")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _Bad("an integer")


def _to_float(value):
    if isinstance(value, bool):
        raise _Bad("a number")
    if isinstance(value, numbers.Real):
        v = float(value)
    elif isinstance(value, str):
        try:
            v = float(value.strip())
        except ValueError:
            raise _Bad("a number") from None
    else:
        raise _Bad("a number")
    if not math.isfinite(v):
        raise _Bad("a finite number")
    return v


def _to_bool(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral) and int(value) in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _Bad("true or false")


def _to_str(value):
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return str(value)
    raise _Bad("a string")


def _to_seq(value, kind):
    if isinstance(value, (list, tuple)):
        return kind(value)
    if isinstance(value, str):
        return kind(_scalar(s.strip()) for s in value.split(",") if s.strip())
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return kind((value,))
    raise _Bad("a list")


def _to_dict(value):
    if isinstance(value, dict):
        return dict(value)
    raise _Bad("a table (dict)")


_CONVERTERS = {int: _to_int, float: _to_float, bool: _to_bool, str: _to_str, dict: _to_dict,
               tuple: lambda v: _to_seq(v, tuple), list: lambda v: _to_seq(v, list)}


def coerce_value(tp, value):
    """``value`` as annotation ``tp``; raises ``_Bad`` (internal) when it does not fit."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is getattr(types, "UnionType", None):
        args = typing.get_args(tp)
        if type(None) in args and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE)):
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return coerce_value(inner[0], value)
        for a in inner:
            try:
                return coerce_value(a, value)
            except _Bad:
                continue
        raise _Bad(" or ".join(getattr(a, "__name__", str(a)) for a in inner))
    conv = _CONVERTERS.get(origin or tp)
    if conv is None:  # an annotation we do not know: leave the value alone
        return value
    if value is None:
        raise _Bad(f"{_describe(tp)} (not empty)")
    return conv(value)


def _describe(tp) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            tuple: "a list", list: "a list", dict: "a table (dict)"}.get(tp, str(tp))


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def coerce_fields(cls, mapping: dict, source: str = "config") -> dict:
    """Check and convert ``mapping`` for dataclass ``cls``.

    Unknown keys and values that do not fit the field's annotation raise
    :class:`FerdataError` naming ``source``, the key and the value.
    """
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(mapping) - set(names))
    if unknown:
        import difflib

        near = {k: difflib.get_close_matches(str(k), names, n=1, cutoff=0.6) for k in unknown}
        hint = "; ".join(f"{k!s}: did you mean {m[0]}?" for k, m in near.items() if m)
        raise FerdataError(f"{source}: unknown key(s) {', '.join(map(str, unknown))} for {cls.__name__}"
                           + (f" ({hint})" if hint else f" (known: {', '.join(sorted(names))})"))
    hints = _hints(cls)
    out = {}
    for k, v in mapping.items():
        try:
            out[k] = coerce_value(hints.get(k), v)
        except _Bad as exc:
            raise FerdataError(f"{source}: {k} must be {exc}, got {v!r}") from None
    return out


class TypedConfig:
    """Mixin for dataclass configs: field values are coerced to their annotations on construction.

    A subclass that defines its own ``__post_init__`` must call ``super().__post_init__()``.
    """

    _what = "config"

    def __post_init__(self):
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, v in coerce_fields(type(self), values, self._what).items():
            object.__setattr__(self, k, v)


def check_ranges(obj, ranges: dict, what: str) -> None:
    """Raise FerdataError for the first field outside its inclusive ``(lo, hi)`` bounds.

    ``None`` bounds are open; ``None`` values (automatic settings) are not checked.
    """
    for name, (lo, hi) in ranges.items():
        v = getattr(obj, name)
        if v is None:
            continue
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            if lo is not None and hi is not None:
                want = f"in [{lo}, {hi}]"
            else:
                want = f">= {lo}" if lo is not None else f"<= {hi}"
            raise FerdataError(f"{what}: {name} must be {want}, got {v!r}")


def check_choice(obj, name: str, choices, what: str) -> None:
    v = getattr(obj, name)
    if v not in choices:
        raise FerdataError(f"{what}: {name} must be one of {'|'.join(map(str, choices))}, got {v!r}")
