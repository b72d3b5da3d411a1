"""Caltech-101 mask transfer (Fei-Fei et al. 2004 images; the pair list of Ham et al./weakalign).

Layout under ``root/``: the images ``101_ObjectCategories/<class>/image_NNNN.jpg``
and a pair CSV — weakalign's ``test_pairs_caltech_with_category.csv`` — with
the columns source image, target image, class (1..101 in the order of
:data:`CALTECH_CLASSES`, or a class name), then the source polygon's X and Y
and the target polygon's X and Y, each field a ``,``-separated list (so the
fields are quoted). Image paths are relative to the root.

Polygon vertices are pixel ``(x, y)``; they are read as written
(``coords="raw"``, as weakalign's ``poly_str_to_mask`` does) or shifted from
Matlab's 1-based pixels (``coords="one-based"``). Masks are the polygons
rasterised with PIL (:func:`polygon_mask`) at the original image sizes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import DataError, UsageError
from ..csvtable import read_csv
from .base import MaskPair, PairDataset, PairEntry, apply_coords, check_coords, image_size, parse_number_list, resolve_file

#: The 101 object classes in the order of the pair list's class ids (sorted folder names).
CALTECH_CLASSES = tuple(
    """Faces Faces_easy Leopards Motorbikes accordion airplanes anchor ant barrel bass beaver binocular bonsai brain
    brontosaurus buddha butterfly camera cannon car_side ceiling_fan cellphone chair chandelier cougar_body
    cougar_face crab crayfish crocodile crocodile_head cup dalmatian dollar_bill dolphin dragonfly electric_guitar
    elephant emu euphonium ewer ferry flamingo flamingo_head garfield gerenuk gramophone grand_piano hawksbill
    headphone hedgehog helicopter ibis inline_skate joshua_tree kangaroo ketch lamp laptop llama lobster lotus
    mandolin mayfly menorah metronome minaret nautilus octopus okapi pagoda panda pigeon pizza platypus pyramid
    revolver rhino rooster saxophone schooner scissors scorpion sea_horse snoopy soccer_ball stapler starfish
    stegosaurus stop_sign strawberry sunflower tick trilobite umbrella watch water_lilly wheelchair wild_cat
    windsor_chair wrench yin_yang""".split()
)
PAIR_LIST_CANDIDATES = ("test_pairs_caltech_with_category.csv", "image_pairs/test_pairs_caltech_with_category.csv")


def polygon_mask(polygon: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Rasterise a polygon ``(K, 2)`` pixel ``(x, y)`` into a bool mask ``(H, W)`` (boundary pixels included)."""
    h, w = size
    img = Image.new("L", (w, h), 0)
    pts = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) >= 3:
        ImageDraw.Draw(img).polygon([(float(x), float(y)) for x, y in pts], fill=1, outline=1)
    return np.asarray(img, dtype=np.uint8) > 0


def class_name(value: str, where: str) -> str:
    """A class field (1..101 or a class name) → the class name."""
    v = value.strip()
    try:
        k = int(float(v))
    except ValueError:
        if v in CALTECH_CLASSES:
            return v
        raise DataError(f"{where}: '{v}' is not a Caltech-101 class") from None
    if not 1 <= k <= len(CALTECH_CLASSES):
        raise DataError(f"{where}: class {k} is outside 1..101")
    return CALTECH_CLASSES[k - 1]


def _is_polygon_row(row: list[str]) -> bool:
    try:
        for f in row[3:7]:
            parse_number_list(f, ",", "polygon")
    except DataError:
        return False
    return True


class Caltech101(PairDataset):
    """Caltech-101 mask-transfer pairs. Options: ``pairs`` (the CSV), ``coords`` (``"raw"`` default)."""

    name = "caltech-101"
    task = "mask"
    source = "Caltech-101 comes from data.caltech.edu (101_ObjectCategories), the pair list from weakalign (ignacio-rocco/weakalign, test_pairs_caltech_with_category.csv)"

    def __init__(self, root: str | Path, split: str | None = None, pairs: str | Path | None = None, coords: str = "raw"):
        if split not in (None, "test"):
            raise UsageError(f"caltech-101 has only a test split, not '{split}'")
        self.root = Path(root)
        self.coords = check_coords(coords)
        if not self.root.is_dir():
            raise DataError(f"caltech-101: root folder '{self.root}' does not exist ({self.source})")
        self.pairs_file = resolve_file(self.root, pairs, PAIR_LIST_CANDIDATES)
        if self.pairs_file is None or not self.pairs_file.is_file():
            raise self.missing(self.pairs_file or self.root / PAIR_LIST_CANDIDATES[0], "pair list")
        self.table = read_csv(self.pairs_file, "caltech-101 pair list", header=False)
        rows = self.table.rows
        if not (len(rows[0]) >= 7 and _is_polygon_row(rows[0])):  # a header row
            self.table.header, rows = list(rows[0]), rows[1:]
        self.entries = []
        for i, row in enumerate(rows):
            self.table.check_width(row, 7)
            category = class_name(row[2], self.table.where(row, 2))
            src, trg = row[0], row[1]
            self.entries.append(PairEntry(f"{i:04d}:{category}/{Path(src).stem}-{Path(trg).stem}", category, row))

    def describe(self) -> dict:
        return dict(super().describe(), pairs=str(self.pairs_file), coords=self.coords)

    def image_columns(self) -> tuple[int, int]:
        return 0, 1

    def _polygon(self, row: list[str], ix: int, iy: int, where: str) -> np.ndarray:
        """The polygon of columns ``ix`` (X list) and ``iy`` (Y list), ``(N, 2)`` with ``coords`` applied."""
        x = parse_number_list(row[ix], ",", self.table.where(row, ix))
        y = parse_number_list(row[iy], ",", self.table.where(row, iy))
        if x.shape != y.shape or len(x) < 3:
            raise DataError(f"{where}: a polygon needs matching X and Y lists of at least 3 values ({len(x)} and {len(y)})")
        return apply_coords(np.stack([x, y], axis=-1), self.coords)

    def load(self, entry: PairEntry) -> MaskPair:
        row = entry.row
        where = f"caltech-101 pair '{entry.pair_id}'"
        src_name, trg_name = row[0], row[1]
        src_path, trg_path = self.root / src_name, self.root / trg_name
        sizes = []
        for p in (src_path, trg_path):
            s = image_size(p)
            if s is None:
                raise self.missing(p, "image")
            sizes.append(s)
        src_poly = self._polygon(row, 3, 4, where)
        trg_poly = self._polygon(row, 5, 6, where)
        return MaskPair(
            pair_id=entry.pair_id,
            src_path=src_path,
            trg_path=trg_path,
            src_name=src_name,
            trg_name=trg_name,
            category=entry.category,
            src_polygon=src_poly,
            trg_polygon=trg_poly,
            src_mask=polygon_mask(src_poly, sizes[0]),
            trg_mask=polygon_mask(trg_poly, sizes[1]),
            src_size=sizes[0],
            trg_size=sizes[1],
            meta={"coords": self.coords},
        )


__all__ = ["Caltech101", "CALTECH_CLASSES", "polygon_mask"]
