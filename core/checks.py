"""Checks made before any computation: input files, output locations, the rows of a list.

A stage runs these first. They read file headers only and import no model
code (torch is not loaded), so a wrong path, a bad row or an unwritable output
is reported within a second or two, before the work rather than after it:

* :func:`require_file`, :func:`check_image_file`: an input exists, is a file
  and (images) starts with a header PIL recognises; nothing is decoded, so a
  file truncated further on is still caught only when it is read;
* :func:`check_output_file`, :func:`check_output_dir`: an output can be
  created where it is asked for. A temporary file is created and removed in
  the folder that will hold it, or in the nearest existing folder above it
  when the folders are still to be made; that is the test the operating
  system itself answers, so read-only mounts, missing permissions and a path
  running through a file are all caught;
* :class:`BadRow` and :class:`BadRowsError`: the rows of a pair list that
  cannot be computed, each named by file and row number in
  :mod:`semcorr.csvtable`'s wording, and the refusal that lists them;
* :func:`check_layer_choice`: the layers asked for are chosen one way only.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError, UsageError, param

#: How many bad rows a refusal lists (the rest are counted).
SHOWN_BAD_ROWS = 5
#: How many skipped rows the report at the end of a batch lists.
SHOWN_SKIPPED_ROWS = 20


# ----------------------------------------------------------------------------- choices


def check_layer_choice(model: str | None, weights: object, layers: object) -> None:
    """Features are chosen by a model or by layers: ``weights`` go with a ``model``, which chooses its own layers."""
    if weights is not None and model is None:
        raise UsageError(f"{param('weights')} goes with {param('model')}")
    if model is not None and layers:
        raise UsageError(f"{param('model')} chooses the layers; drop {param('layers')}")


# ----------------------------------------------------------------------------- inputs


def require_file(path: str | Path, what: str = "file") -> Path:
    """``path`` as a Path; :class:`DataError` when it does not exist or is a folder (``what`` names it)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} '{path}' does not exist")
    if path.is_dir():
        raise DataError(f"{what} '{path}' is a folder, not a file")
    return path


def not_an_image(path: str | Path) -> DataError:
    """The error for a file that PIL does not recognise as an image."""
    return DataError(f"'{path}' is not an image file PIL can read")


def check_image_file(path: str | Path, what: str = "image") -> None:
    """Refuse a missing file, a folder, or a file whose header PIL does not recognise (nothing is decoded)."""
    from PIL import Image, UnidentifiedImageError

    path = require_file(path, what)
    try:
        with Image.open(path):
            pass
    except UnidentifiedImageError:
        raise not_an_image(path) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{what} '{path}' is unreadable ({exc})") from None


# ----------------------------------------------------------------------------- outputs


def _nearest_existing(path: Path) -> Path:
    """The deepest existing path among ``path``'s parents (the folder that will hold it, or would)."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _probe(folder: Path, path: Path, what: str) -> None:
    """Create and remove a temporary file in ``folder``; a failure names ``path``, the output asked for."""
    if not folder.is_dir():
        raise DataError(f"cannot write {what} '{path}': '{folder}' is a file, not a folder")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".semcorr-write-check-", suffix=".tmp")
    except OSError as exc:
        raise DataError(f"cannot write {what} '{path}': the folder '{folder}' is not writable ({exc.strerror})") from None
    os.close(fd)
    os.unlink(tmp)


def check_output_file(path: str | Path, what: str = "output") -> None:
    """Refuse, before any work, an output file that could not be written (see the module doc)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{what} '{path}' is a folder; give a file name")
    _probe(_nearest_existing(path), path, what)


def check_output_dir(path: str | Path, what: str = "output folder") -> None:
    """Refuse, before any work, an output folder that could not be created or written into."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{what} '{path}' is a file, not a folder")
    _probe(path if path.is_dir() else _nearest_existing(path), path, what)


# ----------------------------------------------------------------------------- rows of a list


@dataclass(frozen=True)
class BadRow:
    """A pair of a list that cannot be computed.

    ``index``: the pair's position in the list (0-based, over its pairs, as
    ``--limit`` and ``--shard`` count them); ``message``: one sentence naming
    the file and row (``'pairs.csv' row 37, column 'target_image': image
    'x.png' does not exist``).
    """

    index: int
    message: str


def list_bad_rows(bad: Sequence[BadRow], headline: str, shown: int = SHOWN_BAD_ROWS) -> str:
    """``headline:`` then one indented line per bad row (the first ``shown``; the others counted)."""
    lines = [f"{headline}:"] + [f"  {b.message}" for b in bad[:shown]]
    if len(bad) > shown:
        lines.append(f"  … and {len(bad) - shown} more")
    return "\n".join(lines)


def plural(n: int, word: str) -> str:
    """``"1 pair"``, ``"3 pairs"``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


class BadRowsError(DataError):
    """Some pairs of a list cannot be computed, so none was: ``bad`` (:class:`BadRow`), out of ``total``.

    ``hint`` (optional) says how to go on anyway; it is added in brackets.
    One bad pair gives one sentence, several a headline and their list.
    """

    def __init__(self, bad: Sequence[BadRow], total: int, hint: str | None = None):
        self.bad = list(bad)
        self.total = total
        tail = f" ({hint})" if hint else ""
        if len(self.bad) == 1:
            message = f"{self.bad[0].message}; nothing was computed{tail}"
        else:
            message = list_bad_rows(self.bad, f"{len(self.bad)} of {total} pairs are bad, so nothing was computed{tail}")
        super().__init__(message)


def skipped_rows_report(bad: Sequence[BadRow], total: int, outcome: str) -> str:
    """The report at the end of a batch that skipped ``bad`` of ``total`` pairs; ``outcome`` says what became of the others."""
    ordered = sorted(bad, key=lambda b: b.index)
    return list_bad_rows(ordered, f"skipped {plural(len(bad), 'bad pair')} of {total} ({outcome})", SHOWN_SKIPPED_ROWS)


__all__ = [
    "BadRow",
    "BadRowsError",
    "check_image_file",
    "check_output_dir",
    "check_output_file",
    "list_bad_rows",
    "not_an_image",
    "plural",
    "require_file",
    "skipped_rows_report",
]
