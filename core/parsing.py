"""The one parser of lists and ``KEY=VALUE`` items given as text (options, model settings, reader options).

Every list a user types — ``"features.6,features.10"``, ``"5;5;5"``, ``"0.05,0.1"`` — and every
``KEY=VALUE`` item goes through these functions, so separators, blanks and error sentences are
the same everywhere. Errors name the *parameter* (``name``); the CLI maps parameters to flags.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, TypeVar

from .errors import UsageError

T = TypeVar("T")

#: Separators accepted between list items (a comma, or a semicolon for shells where commas are awkward).
LIST_SEPARATORS = (",", ";")


def split_items(text: str) -> list[str]:
    """``"a, b;c,,"`` → ``["a", "b", "c"]``: split on ``,`` or ``;``, strip blanks, drop empty items."""
    for sep in LIST_SEPARATORS[1:]:
        text = text.replace(sep, LIST_SEPARATORS[0])
    return [x.strip() for x in text.split(LIST_SEPARATORS[0]) if x.strip()]


def parse_list(value: Any, cast: Callable[[Any], T], name: str, kind: str = "values") -> list[T]:
    """A scalar, a sequence or a separated string → ``[cast(item), ...]``.

    ``parse_list("3,3", int, "ncons_kernel_sizes", "integers")`` → ``[3, 3]``;
    ``parse_list(5, int, ...)`` → ``[5]``. A bad item raises :class:`UsageError` naming ``name``.
    """
    if value is None:
        return []
    if isinstance(value, str):
        items: Iterable[Any] = split_items(value)
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        items = [value]
    try:
        return [cast(x) for x in items]
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a list of {kind}, got {value!r}") from None


def parse_int_list(value: Any, name: str) -> list[int]:
    """``"5,5,5"`` / ``5`` / ``[5, 5]`` → list of ints (see :func:`parse_list`)."""
    return parse_list(value, int, name, "integers")


def parse_float_list(value: Any, name: str) -> list[float]:
    """``"0.05,0.1"`` → list of floats (see :func:`parse_list`)."""
    return parse_list(value, float, name, "numbers")


def parse_name_list(value: Any, name: str = "names") -> list[str]:
    """``"features.6,features.10"`` or a sequence of names → list of stripped names."""
    return parse_list(value, lambda x: str(x).strip(), name, "names")


def parse_key_values(items: Iterable[str] | None, name: str, json_values: bool = False, dash_to_underscore: bool = False) -> dict[str, Any]:
    """``["k=v", ...]`` → ``{"k": "v", ...}``.

    ``json_values``: values that parse as JSON (numbers, ``true``/``false``, lists) are decoded,
    others kept as text. ``dash_to_underscore``: ``lists-dir=X`` gives the key ``lists_dir``.
    An item without ``=`` or with an empty key raises :class:`UsageError` naming ``name``.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UsageError(f"{name} takes KEY=VALUE items, got '{item}'")
        if dash_to_underscore:
            key = key.replace("-", "_")
        if json_values:
            try:
                out[key] = json.loads(value)
                continue
            except json.JSONDecodeError:
                pass
        out[key] = value if json_values else value.strip()
    return out
