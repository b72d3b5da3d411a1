"""Choosing the training data source a model needs from a data SPEC.

=================  =====================================  ===================================
model train_data   folder:/voc: (images)                  pf-pascal:/spair:/cub: (annotated pairs)
=================  =====================================  ===================================
``weak``           same-class pairs (folder only)         the benchmark's pairs, images only
``synthetic``      warped single images (+ masks)         warped single images (+ box masks)
``keypoints``      warped single images (+ masks)         the benchmark's annotated pairs
=================  =====================================  ===================================
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from ..errors import DataError, UsageError, param
from ..images import parse_size
from .annotated import AnnotatedPairs
from .folder import scan_class_tree
from .masks import WHOLE_IMAGE, MaskRef, find_mask_file
from .order import seeded_subset
from .pairs import SameClassPairs
from .spec import DataSpec, parse_data_spec
from .synthetic import SyntheticConfig, SyntheticPairs

TRAIN_DATA_KINDS = ("weak", "synthetic", "keypoints")
PCK_REFERENCE = {"pf-pascal": "image", "spair": "bbox", "cub": "bbox"}


def open_keypoint_dataset(kind: str, root: Path, split: str | None):
    """The :mod:`semcorr.datasets` reader for ``kind`` (``pf-pascal``, ``spair`` or ``cub``) on ``root``/``split``."""
    from ..datasets import open_dataset

    dataset = open_dataset(kind, root, split=split)
    if getattr(dataset, "task", "keypoints") != "keypoints":
        raise UsageError(f"{kind} is not a keypoint dataset")
    return dataset


def _folder_images(spec: DataSpec) -> tuple[list[Path], list[MaskRef], str]:
    tree = scan_class_tree(spec.root)
    images = [p for p, _ in tree.images]
    mask_dir = spec.options.get("masks")
    if mask_dir is None:
        return images, [WHOLE_IMAGE] * len(images), str(spec.root)
    mask_root = Path(mask_dir).expanduser()
    if not mask_root.is_dir():
        raise DataError(f"mask folder '{mask_root}' does not exist")
    refs = []
    for p in images:
        m = find_mask_file(p, spec.root, mask_root)
        refs.append(MaskRef("segmentation", path=m) if m is not None else WHOLE_IMAGE)
    return images, refs, str(spec.root)


def _voc_images(spec: DataSpec) -> tuple[list[Path], list[MaskRef], str]:
    split = spec.split or "train"
    listing = spec.root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listing.is_file():
        raise DataError(f"'{listing}' does not exist; voc:ROOT needs a PASCAL VOC year folder (e.g. VOC2012/)")
    images, refs = [], []
    for name in (line.strip() for line in listing.read_text().splitlines()):
        if not name:
            continue
        img = spec.root / "JPEGImages" / f"{name}.jpg"
        seg = spec.root / "SegmentationClass" / f"{name}.png"
        images.append(img)
        refs.append(MaskRef("segmentation", path=seg) if seg.is_file() else WHOLE_IMAGE)
    return images, refs, f"{spec.root} ({split} split)"


def _benchmark_images(dataset, indices: list[int]) -> tuple[list[Path], list[MaskRef]]:
    """Every distinct image of the selected pairs with its bounding box as foreground."""
    seen: dict[Path, MaskRef] = {}
    for i in indices:
        pair = dataset[i]
        for path, box in ((pair.src_path, pair.src_bbox), (pair.trg_path, pair.trg_bbox)):
            if path not in seen or seen[path].kind == "whole":
                seen[path] = MaskRef("box", box=tuple(float(v) for v in box)) if box is not None else WHOLE_IMAGE
    paths = sorted(seen)
    return paths, [seen[p] for p in paths]


def open_training_source(
    spec: str | DataSpec,
    train_data: str,
    image_size: int | tuple[int, int],
    seed: int,
    limit: int | None = None,
    role: str = "train",
    synthetic: SyntheticConfig = SyntheticConfig(),
) -> Dataset:
    """The dataset a model with ``train_data`` trains (or validates, ``role="val"``) on.

    Items are keyed ``(epoch, index)`` (see :mod:`semcorr.training_data.order`); every
    returned dataset has ``describe()``, ``kind`` and ``provides_keypoints``.
    ``limit`` keeps a seeded subset of that many items. Raises
    :class:`DataError` when the spec yields nothing.
    """
    if train_data not in TRAIN_DATA_KINDS:
        raise UsageError(f"train_data must be one of {', '.join(TRAIN_DATA_KINDS)}, not '{train_data}'")
    if isinstance(spec, str):
        spec = parse_data_spec(spec)
    spec = spec.with_default_split("train" if role == "train" else "val")
    size = parse_size(image_size)
    if limit is not None and limit < 1:
        raise UsageError(f"{param('limit_pairs')} must be at least 1")
    source: Dataset
    if spec.kind in ("folder", "voc"):
        if train_data == "weak":
            if spec.kind != "folder":
                raise UsageError(f"a weakly supervised model needs class labels: use folder:PATH, pf-pascal:, spair: or cub:, not {spec.kind}:")
            tree = scan_class_tree(spec.root)
            source = SameClassPairs(tree, size, seed, seeded_subset(len(tree.images), limit, seed))
        else:
            images, refs, origin = _folder_images(spec) if spec.kind == "folder" else _voc_images(spec)
            keep = seeded_subset(len(images), limit, seed)
            source = SyntheticPairs([images[i] for i in keep], [refs[i] for i in keep], size, seed, synthetic, origin)
    else:
        dataset = open_keypoint_dataset(spec.kind, spec.root, spec.split)
        keep = seeded_subset(len(dataset), limit, seed)
        if train_data == "synthetic":
            images, refs = _benchmark_images(dataset, keep)
            origin = f"{spec.kind} {spec.split} at {spec.root}"
            source = SyntheticPairs(images, refs, size, seed, synthetic, origin)
        else:
            source = AnnotatedPairs(dataset, keep, size, flip=(role == "train"), pck_reference=PCK_REFERENCE[spec.kind])
    if len(source) == 0:
        what = {"weak": "same-class image pairs", "synthetic": "images", "keypoints": "pairs"}[train_data]
        hint = " (every class needs at least two images)" if train_data == "weak" and spec.kind == "folder" else ""
        raise DataError(f"the data spec '{spec.text or spec.root}' yields no {what}{hint}")
    return source
