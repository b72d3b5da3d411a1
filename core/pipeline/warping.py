"""The ``warp`` stage: a flow record applied to an image, a binary mask or keypoints, or drawn as matches.

:func:`apply_flow` picks the record and the side the input belongs to (by
path or name, else by size; :func:`checked_side` refuses an input that is not
the record's), moves the input with the flow and writes the result;
:func:`write_coseg_mask` writes a record's co-segmentation mask.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..coseg import THRESHOLD
from ..errors import DataError, UsageError, param
from ..files import atomic_write_text
from ..images import float_to_image, image_to_float, load_image, load_mask, original_size, resize_mask
from ..io.records import PairRecord
from ..viz import blend, matches_figure, save_image
from ..warp import points_through_flow, warp_image, warp_mask

#: ``top`` of :func:`apply_flow` when not asked for: how many matches a drawing shows.
DEFAULT_TOP = 30


def select_record(records: Iterable[PairRecord], pair: str | None = None, need: str = "flow") -> PairRecord:
    """The one record of a stream (or record ``pair``) that holds what is ``need``-ed (``flow`` or ``mask``)."""
    chosen = None
    for rec in records:
        if pair is None or rec.pair_id == pair:
            if chosen is not None:
                raise UsageError(f"the input holds several pairs: choose one with {param('pair')} ID")
            chosen = rec
            if pair is not None:
                break
    if chosen is None:
        raise DataError(f"no pair '{pair}' in the input" if pair else "the input holds no pairs")
    if need == "mask":
        if not chosen.mask:
            raise DataError(
                f"record '{chosen.pair_id}' has no co-segmentation masks; make them with "
                f"'semcorr flow {param('model')} sfnet {param('weights')} W' on a checkpoint with mask regression layers"
            )
    elif not chosen.flow:
        raise DataError(
            f"record '{chosen.pair_id}' has no flow (it is a '{chosen.stage}' record); pipe it through 'semcorr flow' first"
        )
    return chosen


def named_side(rec: PairRecord, path: Path, direction: str = "auto") -> str | None:
    """'src' when ``path`` is the record's source image (by path or file name), 'trg' when it is the target; None when neither.

    ``direction`` ``src``/``trg`` names the side outright.
    """
    if direction in ("src", "trg"):
        return direction
    p = str(Path(path).resolve())
    for side in ("src", "trg"):
        name = rec.image_path(side)
        if str(name.resolve()) == p or name.name == Path(path).name:
            return side
    return None


def _shown(rec: PairRecord, side: str) -> str:
    h, w = rec.src_size if side == "src" else rec.trg_size
    return f"{'source' if side == 'src' else 'target'} '{rec.src_path if side == 'src' else rec.trg_path}' ({w}x{h})"


def checked_side(rec: PairRecord, path: Path, size: tuple[int, int], named: str | None, what: str, force: bool) -> str:
    """The side ``path`` (of upright ``size = (H, W)``) belongs to; refuse an input that is not the record's.

    ``named``: the side found by path or name (or given as ``direction``). An
    input without one is placed by its size; with ``force`` a mismatch is
    warped anyway (resized), on the named side or the source.
    """
    fits = [s for s in ("src", "trg") if tuple(rec.src_size if s == "src" else rec.trg_size) == tuple(size)]
    side = named or (fits[0] if fits else None)
    if side is not None and side in fits:
        return side
    if force:
        return side or "src"
    h, w = size
    if side is None:
        raise DataError(
            f"{what} '{path}' ({w}x{h}) is neither the record's {_shown(rec, 'src')} nor its {_shown(rec, 'trg')}; "
            f"give the one the flow was computed from, or {param('force')} to warp it anyway (resized)"
        )
    raise DataError(f"{what} '{path}' is {w}x{h} but the record's {_shown(rec, side)}; {param('force')} warps it anyway (resized)")


def write_coseg_mask(records: Iterable[PairRecord], side: str, output: str | Path, pair: str | None = None) -> int:
    """Write the record's co-segmentation mask of ``side`` (``mask/src`` or ``mask/trg``) as a 0/255 PNG; → its foreground pixel count."""
    if side not in ("src", "trg"):
        raise UsageError(f"{param('coseg')} must be src or trg, not '{side}'")
    rec = select_record(records, pair, need="mask")
    if side not in rec.mask:
        raise DataError(f"record '{rec.pair_id}' has no mask/{side}")
    fg = np.asarray(rec.mask[side]) > THRESHOLD
    save_image(Image.fromarray(fg.astype(np.uint8) * 255, mode="L"), output)
    return int(fg.sum())


@dataclass
class WarpResult:
    """What :func:`apply_flow` wrote: ``kind`` (image, mask, keypoints, matches), the input's ``side``, and for keypoints how many were ``moved`` of ``total``."""

    kind: str
    side: str
    moved: int | None = None
    total: int | None = None


def _matches_title(rec: PairRecord, side: str) -> str:
    names = (Path(rec.src_path).name, Path(rec.trg_path).name)
    if side == "trg":
        names = names[::-1]
    return f"{rec.method()}:  {names[0]}  to  {names[1]}  (pair {rec.pair_id})"


def draw_record_matches(rec: PairRecord, img: Image.Image, other_img: Image.Image, side: str, top: int = DEFAULT_TOP, foreground=None) -> Image.Image:
    """The matches drawing: ``img`` (on ``side``, at the record's size) and the other image, titled, with a colour bar."""
    own, back = ("src_to_trg", "trg_to_src") if side == "src" else ("trg_to_src", "src_to_trg")
    other_h, other_w = rec.trg_size if side == "src" else rec.src_size
    if other_img.size != (other_w, other_h):
        other_img = other_img.resize((other_w, other_h))
    return matches_figure(img, other_img, rec.flow[own], rec.flow[back], rec.confidence.get(own), _matches_title(rec, side), top, foreground)


def apply_flow(
    records: Iterable[PairRecord],
    output: str | Path,
    image: Path | None = None,
    mask: Path | None = None,
    keypoints: np.ndarray | None = None,
    pair: str | None = None,
    direction: str = "auto",
    other: Path | None = None,
    overlay: bool = False,
    matches: bool = False,
    top: int = DEFAULT_TOP,
    foreground: Path | None = None,
    force: bool = False,
) -> WarpResult:
    """Apply the flow of the record (``pair``) to one input and write ``output``.

    * ``image``: warped into the other image's frame (backward warping,
      bilinear), ``overlay`` blended with the other image, or with
      ``matches`` drawn side by side with it (:func:`draw_record_matches`;
      ``foreground``: a mask of the image the matches must lie on);
    * ``mask``: warped the same way, written as a 0/255 PNG;
    * ``keypoints`` ``(N, 2)`` pixel ``(x, y)``: moved with the flow, written
      as an ``x,y`` CSV (NaN where a point leaves the image).

    The other image is ``other`` or the record's.
    """
    given = image if image is not None else mask
    rec = select_record(records, pair)
    named = named_side(rec, given, direction) if given is not None else (direction if direction in ("src", "trg") else None)
    if image is not None:
        img = load_image(image)
        side = checked_side(rec, image, original_size(img), named, "image", force)
    elif mask is not None:
        m = load_mask(mask)
        side = checked_side(rec, mask, m.shape, named, "mask", force)
    else:
        side = named or "src"
    # An input on side S is read in its own frame; the flow defined on the other frame points into it.
    into_other = "trg_to_src" if side == "src" else "src_to_trg"
    own_flow = "src_to_trg" if side == "src" else "trg_to_src"
    own_size = rec.src_size if side == "src" else rec.trg_size
    other_path = other or rec.image_path("trg" if side == "src" else "src")
    if (matches or overlay) and other is None and not other_path.is_file():
        raise DataError(f"the record's other image '{other_path}' is not here (paths are as extract saw them); give it with {param('other')} FILE")

    if keypoints is not None:
        moved = points_through_flow(torch.from_numpy(keypoints), torch.from_numpy(rec.flow[own_flow])).numpy()
        lines = ["x,y"] + [f"{x:.3f},{y:.3f}" for x, y in moved]
        atomic_write_text(output, "\n".join(lines) + "\n")
        return WarpResult("keypoints", side, int(np.isfinite(moved).all(1).sum()), len(keypoints))

    if mask is not None:
        if m.shape != tuple(own_size):
            m = resize_mask(m, own_size)
        flow = torch.from_numpy(rec.flow[into_other]).unsqueeze(0)
        out = warp_mask(torch.from_numpy(m)[None, None], flow)[0, 0].numpy()
        save_image(Image.fromarray((out * 255).astype(np.uint8), mode="L"), output)
        return WarpResult("mask", side)

    if (img.height, img.width) != tuple(own_size):
        img = img.resize((own_size[1], own_size[0]))
    if (top != DEFAULT_TOP or foreground is not None) and not matches:
        raise UsageError(f"{param('top')} and {param('foreground')} go with {param('matches')}")
    if matches:
        fg = None
        if foreground is not None:
            fg = load_mask(foreground)
            if fg.shape != tuple(own_size):
                raise DataError(
                    f"{param('foreground')} mask '{foreground}' is {fg.shape[1]}x{fg.shape[0]}, not the image's {own_size[1]}x{own_size[0]}"
                )
        save_image(draw_record_matches(rec, img, load_image(other_path), side, top, fg), output)
        return WarpResult("matches", side)
    flow = torch.from_numpy(rec.flow[into_other]).unsqueeze(0)
    warped = float_to_image(warp_image(image_to_float(img), flow))
    if overlay:
        warped = blend(warped, load_image(other_path), 0.5)
    save_image(warped, output)
    return WarpResult("image", side)
