"""Pair lists: the ``--pairs`` CSV of ``extract`` (``source_image,target_image``).

:func:`read_pair_list` reads one and checks every row up front (cells, image
files), so a batch can refuse its bad rows, or skip them, before any work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..checks import BadRow, check_image_file
from ..csvtable import read_csv
from ..errors import DataError

#: Accepted header names for the two image columns, in order of preference.
SOURCE_COLUMNS = ("source_image", "imageA", "source image", "src", "source")
TARGET_COLUMNS = ("target_image", "imageB", "target image", "trg", "target")


@dataclass(frozen=True)
class ImagePair:
    """One row of a pair list: the paths as written, and resolved against the root.

    ``row``: its row in the pair list (the first line is row 1), None for a
    pair given on the command line.
    """

    pair_id: str
    src_name: str
    trg_name: str
    src_path: Path
    trg_path: Path
    row: int | None = None


def pairs_root(path: str | Path, root: str | Path | None = None) -> Path:
    """The folder relative paths of pair list ``path`` are resolved against: ``root``, else the CSV's folder."""
    return Path(root) if root is not None else Path(path).parent


def _image_path(name: str, base: Path) -> Path:
    return Path(name) if Path(name).is_absolute() else base / name


@dataclass
class PairList:
    """A pair list checked before a batch: the ``pairs`` to compute and the ``bad`` rows, out of ``total``.

    ``bad`` holds :class:`semcorr.checks.BadRow`, each named by file, row and
    column in :mod:`semcorr.csvtable`'s wording; a good pair keeps the id of its
    position in the list, so skipping a row does not renumber the others.
    """

    path: Path
    pairs: list[ImagePair]
    bad: list[BadRow]
    total: int

    def where(self, pair: ImagePair) -> str:
        """``'FILE' row N``: the start of a sentence about one pair."""
        return f"'{self.path}' row {pair.row}"


def read_pair_list(path: str | Path, root: str | Path | None = None, limit: int | None = None, images: bool = True) -> PairList:
    """Read a pair list and check every row (of the first ``limit``) before any work.

    Relative paths are resolved against ``root`` (default: the CSV's folder).
    A row is bad when a cell is missing or empty, or (``images``) when its
    source or target is missing or not an image (header only, nothing is
    decoded). A malformed file (header, quoting) raises :class:`DataError`.
    """
    path = Path(path)
    base = pairs_root(path, root)
    table = read_csv(path, "pair list")
    if images and not base.is_dir():  # rather than every image of every row
        raise DataError(f"the image folder '{base}' of pair list '{path}' does not exist")
    si = table.require_column(SOURCE_COLUMNS)
    ti = table.require_column(TARGET_COLUMNS)
    rows = table.rows[:limit] if limit is not None else table.rows
    if not rows:
        raise DataError(f"pair list '{path}' has no pairs")
    pairs, bad = [], []
    for index, row in enumerate(rows):
        try:
            s, t = table.cell(row, si), table.cell(row, ti)
            pair = ImagePair(f"{index:06d}", s, t, _image_path(s, base), _image_path(t, base), row.number)
            if images:
                for column, image in ((si, pair.src_path), (ti, pair.trg_path)):
                    try:
                        check_image_file(image)
                    except DataError as exc:
                        raise table.error(row, column, str(exc)) from None
        except DataError as exc:
            bad.append(BadRow(index, str(exc)))
            continue
        pairs.append(pair)
    return PairList(path, pairs, bad, len(rows))
