"""CUB-200-2011 (Wah et al., "The Caltech-UCSD Birds-200-2011 Dataset", 2011) as keypoint pairs.

Published layout under ``root/`` (``root`` may also be the folder holding ``CUB_200_2011/``):

* ``images.txt``: ``<image_id> <class folder>/<file>.jpg``, the images under ``images/``;
* ``image_class_labels.txt``: ``<image_id> <class_id>``;
* ``bounding_boxes.txt``: ``<image_id> <x> <y> <width> <height>``;
* ``parts/parts.txt``: ``<part_id> <part name>`` (15 parts: back, beak, …);
* ``parts/part_locs.txt``: ``<image_id> <part_id> <x> <y> <visible>``, one
  line per image and part, ``visible`` 0 for a part that is not seen (its
  ``x y`` are then 0); invisible parts become NaN rows and are never scored;
* ``train_test_split.txt``: ``<image_id> <is_training_image>`` (1 train, 0 test).

The dataset has no pair list of its own. The list is, in this order:

* ``pairs=FILE``: a line per pair, ``<source image_id> <target image_id>``
  (ids of ``images.txt``), every line, or the first ``n_pairs`` when given;
* for the test split, the pair file of the public CUB correspondence readers
  when it lies in the root beside ``images.txt``: ``random_pairs.txt``
  (``pairing="random"``) or ``class_pairs.txt`` (``pairing="class"``), in the
  same one-pair-a-line form, of which those readers keep the first 10,000
  lines (``n_pairs`` changes that);
* else a list the reader draws: ``n_pairs`` (10,000) pairs of distinct images
  of the split, from ``seed`` (0) with Python's ``random.Random``, either of
  any two birds (``pairing="random"``) or of two birds of one species
  (``pairing="class"``). The drawn list is semcorr's, not a paper's
  (docs/protocols.md).

A pair's category is the source image's species folder.

Boxes ``x y w h`` become ``x1, y1, x2 = x + w, y2 = y + h``, so
``max(w, h)`` is the α_bbox length. Coordinates are used as written
(``coords="raw"``, as the public readers do); ``one-based`` subtracts 1.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from ..errors import DataError, UsageError
from .base import KeypointPair, PairDataset, PairEntry, check_coords, keypoint_pair, list_pair_id

SPLITS = {"train": 1, "test": 0}
PAIRINGS = ("random", "class")
N_PARTS = 15
DEFAULT_PAIRS = 10000
#: The pair files of the public CUB correspondence readers (first 10,000 lines kept), by pairing.
PUBLISHED_PAIR_FILES = {"random": "random_pairs.txt", "class": "class_pairs.txt"}
LAYOUT_FILES = ("images.txt", "image_class_labels.txt", "bounding_boxes.txt", "train_test_split.txt", "parts/part_locs.txt")


def find_cub_root(root: Path) -> Path | None:
    """The folder holding ``images.txt``: ``root`` itself or ``root/CUB_200_2011``."""
    for cand in (root, root / "CUB_200_2011"):
        if (cand / "images.txt").is_file():
            return cand
    return None


def read_id_table(path: Path, columns: int, what: str) -> dict[int, list[str]]:
    """A whitespace-separated ``<id> <field> …`` file → ``{id: [fields]}`` (at least ``columns`` fields after the id)."""
    out: dict[int, list[str]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            key = int(parts[0])
        except ValueError:
            raise DataError(f"cub: {what} '{path}' line {lineno} does not start with an id") from None
        if len(parts) < columns + 1:
            raise DataError(f"cub: {what} '{path}' line {lineno} has {len(parts) - 1} fields, expected {columns}")
        out[key] = parts[1:]
    return out


def read_part_locs(path: Path) -> dict[int, np.ndarray]:
    """``part_locs.txt`` → ``{image_id: (15, 2)}`` pixel ``(x, y)``, NaN rows for invisible parts."""
    try:
        table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DataError(f"cub: part locations '{path}' are not rows of 5 numbers ({exc})") from None
    if table.size and table.shape[1] != 5:
        raise DataError(f"cub: part locations '{path}' have {table.shape[1]} columns, expected 5 (image part x y visible)")
    out: dict[int, np.ndarray] = {}
    for image_id, part, x, y, visible in table:
        k = int(part)
        if not 1 <= k <= N_PARTS:
            raise DataError(f"cub: '{path}' names part {k}, outside 1..{N_PARTS}")
        pts = out.setdefault(int(image_id), np.full((N_PARTS, 2), np.nan))
        if visible > 0:
            pts[k - 1] = (x, y)
    return out


def draw_pairs(image_ids: list[int], classes: dict[int, str], n_pairs: int, seed: int, pairing: str) -> list[tuple[int, int]]:
    """``n_pairs`` distinct ordered pairs of distinct images (fewer when fewer exist), drawn from ``seed``.

    ``pairing="class"`` draws the source at random, then a target of its species.
    """
    rng = random.Random(seed)
    by_class: dict[str, list[int]] = {}
    for i in image_ids:
        by_class.setdefault(classes[i], []).append(i)
    if pairing == "class":
        pool = [i for i in image_ids if len(by_class[classes[i]]) > 1]
        possible = sum(len(v) * (len(v) - 1) for v in by_class.values())
    else:
        pool = list(image_ids)
        possible = len(pool) * (len(pool) - 1)
    wanted = min(n_pairs, possible)
    seen: set[tuple[int, int]] = set()
    pairs: list[tuple[int, int]] = []
    while len(pairs) < wanted:
        a = pool[rng.randrange(len(pool))]
        others = by_class[classes[a]] if pairing == "class" else pool
        b = others[rng.randrange(len(others))]
        if a != b and (a, b) not in seen:
            seen.add((a, b))
            pairs.append((a, b))
    return pairs


class CUB200(PairDataset):
    """CUB-200-2011 keypoint pairs of one split (``train`` or ``test``, default test); see the module doc."""

    name = "cub"
    task = "keypoints"
    source = "CUB-200-2011 comes from www.vision.caltech.edu/datasets/cub_200_2011 (CUB_200_2011.tgz)"

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        pairs: str | Path | None = None,
        pairing: str = "random",
        n_pairs: int | str | None = None,
        seed: int | str = 0,
        coords: str = "raw",
    ):
        given = Path(root)
        if not given.is_dir():
            raise DataError(f"cub: root folder '{given}' does not exist ({self.source})")
        found = find_cub_root(given)
        if found is None:
            raise self.missing(given / "images.txt", "image list")
        self.root = found
        self.split = split or "test"
        if self.split not in SPLITS:
            raise UsageError(f"cub has the splits {', '.join(SPLITS)}, not '{self.split}'")
        if pairing not in PAIRINGS:
            raise UsageError(f"cub pairing must be {' or '.join(PAIRINGS)}, not '{pairing}'")
        try:
            limit, self.seed = (None if n_pairs is None else int(n_pairs)), int(seed)
        except ValueError:
            raise UsageError(f"cub n_pairs and seed must be integers, not '{n_pairs}' and '{seed}'") from None
        if limit is not None and limit < 1:
            raise UsageError(f"cub n_pairs must be at least 1, not {limit}")
        self.n_pairs = DEFAULT_PAIRS if limit is None else limit
        self.pairing, self.coords = pairing, check_coords(coords)
        for f in LAYOUT_FILES:
            if not (self.root / f).is_file():
                raise self.missing(self.root / f, "annotation file")
        self.images = {k: v[0] for k, v in read_id_table(self.root / "images.txt", 1, "image list").items()}
        self.classes = {k: v.split("/")[0] for k, v in self.images.items()}
        boxes = read_id_table(self.root / "bounding_boxes.txt", 4, "box list")
        self.boxes = {k: self._box(v, k) for k, v in boxes.items()}
        is_train = {k: v[0] for k, v in read_id_table(self.root / "train_test_split.txt", 1, "split list").items()}
        self.part_names = self._part_names()
        self.parts = read_part_locs(self.root / "parts" / "part_locs.txt")
        ids = sorted(k for k, v in is_train.items() if int(v) == SPLITS[self.split] and k in self.images)
        self.pairs_file, self.pairs_found = None, False
        published = self.root / PUBLISHED_PAIR_FILES[pairing]
        if pairs is not None:
            self.pairs_file = Path(pairs) if Path(pairs).is_absolute() else self.root / pairs
            rows = self._read_pairs(self.pairs_file, limit)
        elif self.split == "test" and published.is_file():
            self.pairs_file, self.pairs_found = published, True
            rows = self._read_pairs(published, self.n_pairs)
        else:
            rows = draw_pairs(ids, self.classes, self.n_pairs, self.seed, pairing)
        self.entries = []
        for i, (a, b) in enumerate(rows):
            pid = list_pair_id(i, self.images[a], self.images[b])
            self.entries.append(PairEntry(pid, self.classes[a], (a, b)))

    def _box(self, fields: list[str], image_id: int) -> np.ndarray:
        try:
            x, y, w, h = (float(v) for v in fields[:4])
        except ValueError:
            raise DataError(f"cub: the box of image {image_id} is not four numbers") from None
        return np.array([x, y, x + w, y + h])

    def _part_names(self) -> list[str]:
        path = self.root / "parts" / "parts.txt"
        if not path.is_file():
            return [f"part{k}" for k in range(1, N_PARTS + 1)]
        names = {k: " ".join(v) for k, v in read_id_table(path, 1, "part names").items()}
        return [names.get(k, f"part{k}") for k in range(1, N_PARTS + 1)]

    def _read_pairs(self, path: Path, limit: int | None = None) -> list[tuple[int, int]]:
        """The ``(source id, target id)`` rows of a pair file, its first ``limit`` pairs when given (later lines unread)."""
        if not path.is_file():
            raise DataError(f"cub: pair list '{path}' does not exist")
        rows: list[tuple[int, int]] = []
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if limit is not None and len(rows) >= limit:
                break
            parts = line.replace(",", " ").split()
            if not parts:
                continue
            try:
                a, b = int(parts[0]), int(parts[1])
            except (ValueError, IndexError):
                raise DataError(f"cub: pair list '{path}' line {lineno} is not '<source id> <target id>'") from None
            for k in (a, b):
                if k not in self.images:
                    raise DataError(f"cub: pair list '{path}' line {lineno} names image {k}, which images.txt lacks")
            rows.append((a, b))
        return rows

    def describe(self) -> dict:
        d = dict(super().describe(), split=self.split, coords=self.coords)
        if self.pairs_file is not None:
            d["pairs"] = str(self.pairs_file)
            if self.pairs_found:
                d["pairs_found_in_root"] = True
        else:
            d.update(pairing=self.pairing, n_pairs_drawn=self.n_pairs, seed=self.seed)
        return d

    def load(self, entry: PairEntry) -> KeypointPair:
        a, b = entry.row
        names = (f"images/{self.images[a]}", f"images/{self.images[b]}")
        kps = tuple(self.parts.get(k, np.full((N_PARTS, 2), np.nan)) for k in (a, b))
        meta = {"src_id": a, "trg_id": b, "src_class": self.classes[a], "trg_class": self.classes[b], "coords": self.coords}
        return keypoint_pair(entry, self.root, names, kps, (self.boxes.get(a), self.boxes.get(b)), self.coords, meta)


__all__ = ["CUB200", "draw_pairs", "read_part_locs", "find_cub_root", "N_PARTS", "PUBLISHED_PAIR_FILES"]
