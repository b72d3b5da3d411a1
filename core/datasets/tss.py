"""TSS (Taniai et al., "Joint Recovery of Dense Correspondence and Cosegmentation in Two Images", CVPR 2016).

Published layout: ``root/<subset>/<pair>/`` for the subsets ``FG3DCar``,
``JODS`` and ``PASCAL``, each pair folder holding ``image1.png``,
``image2.png``, ``flow1.flo`` (image1 → image2), ``flow2.flo`` (image2 →
image1), ``mask1.png``, ``mask2.png`` (foreground), ``flip_gt.txt`` and
``pair.txt`` (the original image names). ``root`` may also be the folder that
contains ``TSS_CVPR2016/`` or the kit's ``Dataset/``.

The ``.flo`` files hold displacements, defined on the foreground only
(``1e10`` elsewhere): pixel ``(x, y)`` of image1 corresponds to
``(x + u, y + v)`` of image2, in 0-based pixel coordinates. They are converted
to semcorr's absolute flows with NaN where unknown.

``flip_gt.txt`` is 1 when the two objects face opposite ways (e.g.
``PASCAL/bike_01_03``). The ground-truth flows are *not* flipped — they map
the original images to each other, mirroring included; the flag only tells
methods that cannot match mirrored objects to run on a mirrored image1
(see :func:`semcorr.evaluate.scoring.flip_aware_predict`).
"""

from __future__ import annotations

from pathlib import Path

from ..checks import check_image_file
from ..errors import DataError, UsageError
from ..io.middlebury_flo import displacement_to_absolute, read_flo
from ..images import load_mask
from ..parsing import parse_name_list
from .base import FlowPair, PairDataset, PairEntry, image_size

SUBSETS = ("FG3DCar", "JODS", "PASCAL")
PAIR_FILES = ("image1.png", "image2.png", "flow1.flo", "flow2.flo", "mask1.png", "mask2.png")


def find_tss_root(root: Path) -> Path | None:
    """The folder holding the subsets: ``root`` itself, ``root/TSS_CVPR2016`` or ``root/Dataset``."""
    for cand in (root, root / "TSS_CVPR2016", root / "Dataset", root / "TSS_CVPR2016" / "Dataset"):
        if any((cand / s).is_dir() for s in SUBSETS):
            return cand
    return None


def read_flip(path: Path) -> bool:
    """``flip_gt.txt`` → bool (absent: False)."""
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    if text not in ("0", "1"):
        raise DataError(f"tss: '{path}' should hold 0 or 1, not '{text[:20]}'")
    return text == "1"


def read_pair_names(path: Path) -> dict[str, str]:
    """``pair.txt`` (``Image1,Image2`` then the names) → ``{"image1": …, "image2": …}`` (empty when absent)."""
    if not path.is_file():
        return {}
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    if len(lines) >= 2 and "," in lines[1]:
        a, b = lines[1].split(",", 1)
        return {"image1": a.strip(), "image2": b.strip()}
    return {}


class TSS(PairDataset):
    """TSS pairs, every pair folder of the chosen ``subsets`` (default all three, or a list or comma-separated string), sorted."""

    name = "tss"
    task = "flow"
    tasks = ("flow", "coseg")
    source = "TSS comes from taniai.space/projects/cvpr16_dccs (TSS_CVPR2016.zip); a sample is in the evaluation kit github.com/t-taniai/TSS_CVPR2016_EvaluationKit"

    def __init__(self, root: str | Path, split: str | None = None, subsets: str | list[str] | tuple[str, ...] | None = None):
        if split not in (None, "test"):
            raise UsageError(f"tss has only a test split, not '{split}'")
        given = Path(root)
        if not given.is_dir():
            raise DataError(f"tss: root folder '{given}' does not exist ({self.source})")
        found = find_tss_root(given)
        if found is None:
            raise DataError(f"tss: no FG3DCar, JODS or PASCAL folder in '{given}'; is the root right? ({self.source})")
        self.root = found
        subsets = parse_name_list(subsets, "subsets") or list(SUBSETS)
        unknown = [s for s in subsets if s not in SUBSETS]
        if unknown:
            raise UsageError(f"tss subset '{unknown[0]}' is not one of {', '.join(SUBSETS)}")
        self.subsets = subsets
        self.entries = []
        for subset in subsets:
            folder = self.root / subset
            if not folder.is_dir():
                continue
            for pair_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
                if (pair_dir / "image1.png").is_file():
                    self.entries.append(PairEntry(f"{subset}/{pair_dir.name}", subset, pair_dir))

    def describe(self) -> dict:
        return dict(super().describe(), subsets=self.subsets)

    def check(self, entry: PairEntry, images: bool = True) -> None:
        """A pair's files are all there and its images are images (the flows are read when scored)."""
        d: Path = entry.row
        for f in PAIR_FILES:
            if not (d / f).is_file():
                raise self.missing(d / f, "pair file")
        for name in ("image1.png", "image2.png"):  # their sizes are needed even with precomputed flows
            check_image_file(d / name)

    def load(self, entry: PairEntry) -> FlowPair:
        d: Path = entry.row
        for f in PAIR_FILES:
            if not (d / f).is_file():
                raise self.missing(d / f, "pair file")
        src_size, trg_size = image_size(d / "image1.png"), image_size(d / "image2.png")
        if src_size is None or trg_size is None:
            raise DataError(f"tss: an image of '{d}' is unreadable")
        f1 = read_flo(d / "flow1.flo")
        f2 = read_flo(d / "flow2.flo")
        m1, m2 = load_mask(d / "mask1.png"), load_mask(d / "mask2.png")
        for what, arr, size in (("flow1.flo", f1, src_size), ("flow2.flo", f2, trg_size), ("mask1.png", m1, src_size), ("mask2.png", m2, trg_size)):
            if tuple(arr.shape[:2]) != tuple(size):
                raise DataError(f"tss: '{d / what}' is {arr.shape[1]}x{arr.shape[0]} but its image is {size[1]}x{size[0]}")
        names = read_pair_names(d / "pair.txt")
        return FlowPair(
            pair_id=entry.pair_id,
            src_path=d / "image1.png",
            trg_path=d / "image2.png",
            src_name=f"{entry.pair_id}/image1.png",
            trg_name=f"{entry.pair_id}/image2.png",
            category=entry.category,
            flow_src_to_trg=displacement_to_absolute(f1),
            flow_trg_to_src=displacement_to_absolute(f2),
            src_mask=m1,
            trg_mask=m2,
            flip=read_flip(d / "flip_gt.txt"),
            src_size=src_size,
            trg_size=trg_size,
            meta={"original_names": names} if names else {},
        )


__all__ = ["TSS", "SUBSETS", "find_tss_root", "read_flip", "read_pair_names"]
