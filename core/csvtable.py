"""The one reader of CSV files: pair lists, keypoint files, the datasets' lists.

Every CSV semcorr reads (``extract --pairs``, ``warp --keypoints``, the
``custom``/PF-WILLOW/PF-PASCAL/Caltech lists of ``evaluate`` and ``train``)
goes through :func:`read_csv`, so all of them accept the same files:

* UTF-8, with or without a byte-order mark (as spreadsheet programs save it);
* LF or CRLF line ends;
* quoted fields holding commas, spaces or doubled quotes (``"my cat, 2.jpg"``),
  also after a space that follows the comma;
* blank rows, which are skipped; cells are stripped of surrounding spaces;

all of them refuse malformed quoting (a quote left open, text after a closing
quote), and all of them word a bad file the same way, naming the file, the
row (as a spreadsheet numbers it: the first line is row 1) and the column::

    'pairs.csv' row 3, column 'target_image': missing (the row has 1 field)
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError


class CsvRow(list):
    """One row's cells (a list of str) and ``number``, its row in the file (the first line is row 1)."""

    def __init__(self, cells: Sequence[str], number: int):
        super().__init__(cells)
        self.number = number


@dataclass
class CsvTable:
    """A CSV file read by :func:`read_csv`: ``header`` (empty when read without one) and data ``rows``."""

    path: Path
    header: list[str] = field(default_factory=list)
    rows: list[CsvRow] = field(default_factory=list)

    def column(self, names: Sequence[str]) -> int | None:
        """Index of the first header column named (case-insensitively) one of ``names``; None when absent."""
        low = [h.lower() for h in self.header]
        for name in names:
            if name.lower() in low:
                return low.index(name.lower())
        return None

    def require_column(self, names: Sequence[str]) -> int:
        """:meth:`column`, or :class:`DataError` naming the file, the column and the header."""
        i = self.column(names)
        if i is None:
            raise DataError(f"'{self.path}' has no '{names[0]}' column (header: {', '.join(self.header)})")
        return i

    def column_name(self, index: int) -> str:
        """``'NAME'`` from the header, or the 1-based column number where there is no header name."""
        return f"'{self.header[index]}'" if index < len(self.header) else str(index + 1)

    def where(self, row: CsvRow, index: int) -> str:
        """``'FILE' row N, column 'NAME'``: the start of every sentence about one cell."""
        return f"'{self.path}' row {row.number}, column {self.column_name(index)}"

    def error(self, row: CsvRow, index: int, problem: str) -> DataError:
        """The data error for one cell: ``'FILE' row N, column 'NAME': problem``."""
        return DataError(f"{self.where(row, index)}: {problem}")

    def cell(self, row: CsvRow, index: int, required: bool = True) -> str:
        """The text of a cell; a missing (or, when ``required``, empty) cell is a :meth:`error`."""
        if index >= len(row):
            raise self.error(row, index, f"missing (the row has {len(row)} field{'s' if len(row) != 1 else ''})")
        if required and not row[index]:
            raise self.error(row, index, "empty")
        return row[index]

    def number(self, row: CsvRow, index: int) -> float:
        """A cell as a float; anything else is a :meth:`error`."""
        text = self.cell(row, index)
        try:
            return float(text)
        except ValueError:
            raise self.error(row, index, f"'{text[:60]}' is not a number") from None

    def check_width(self, row: CsvRow, expected: int, exact: bool = False) -> None:
        """Refuse a row with fewer (or, ``exact``, other) than ``expected`` fields."""
        if len(row) < expected or (exact and len(row) != expected):
            raise DataError(f"'{self.path}' row {row.number} has {len(row)} fields, expected {expected}")


def read_csv(path: str | Path, what: str = "CSV file", header: bool = True) -> CsvTable:
    """Read ``path`` (see the module docstring); ``header``: the first non-blank row names the columns.

    ``what`` names the file in the errors that do not concern one row
    (``"pair list 'x.csv' does not exist"``). Raises :class:`DataError`.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} '{path}' does not exist")
    if path.is_dir():
        raise DataError(f"{what} '{path}' is a folder, not a CSV file")
    rows: list[CsvRow] = []
    number = 0
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for number, cells in enumerate(csv.reader(fh, skipinitialspace=True, strict=True), start=1):
                cells = [c.strip() for c in cells]
                if any(cells):
                    rows.append(CsvRow(cells, number))
    except UnicodeDecodeError:
        raise DataError(f"{what} '{path}' is not UTF-8 text (save it as 'CSV UTF-8')") from None
    except csv.Error as exc:
        raise DataError(f"'{path}' row {number + 1} is not valid CSV ({exc})") from None
    if not rows:
        raise DataError(f"{what} '{path}' is empty")
    if not header:
        return CsvTable(path, [], rows)
    return CsvTable(path, list(rows[0]), rows[1:])


def read_points_csv(path: str | Path):
    """A keypoint file: ``x,y`` per row → float64 ``(N, 2)``.

    An optional header names the columns (``x`` and ``y``, any others
    ignored); without one the first two columns are x and y. Rows whose first
    cell starts with ``#`` are comments.
    """
    import numpy as np

    table = read_csv(path, "keypoint file", header=False)
    rows = [r for r in table.rows if not r[0].startswith("#")]
    if rows and rows[0][0].lower() == "x":
        table.header, rows = list(rows[0]), rows[1:]
        xi, yi = table.require_column(("x",)), table.require_column(("y",))
    else:
        table.header, xi, yi = ["x", "y"], 0, 1
    if not rows:
        raise DataError(f"keypoint file '{path}' holds no points")
    return np.asarray([(table.number(r, xi), table.number(r, yi)) for r in rows], dtype=np.float64)


__all__ = ["CsvRow", "CsvTable", "read_csv", "read_points_csv"]
