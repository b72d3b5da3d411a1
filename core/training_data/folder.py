"""Scanning image folders: a class-per-folder tree such as Caltech-101's ``101_ObjectCategories/``."""

from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


@dataclass(frozen=True)
class ClassTree:
    """Images of a folder tree grouped by class.

    ``classes``: sorted class names (the sub-folder names; ``""`` for images
    lying directly in the root); ``images``: sorted ``(path, class_index)``.
    """

    root: Path
    classes: tuple[str, ...]
    images: tuple[tuple[Path, int], ...]

    def by_class(self) -> list[list[int]]:
        """Image indices of every class, in ``classes`` order."""
        groups: list[list[int]] = [[] for _ in self.classes]
        for i, (_, c) in enumerate(self.images):
            groups[c].append(i)
        return groups


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_image_files(folder: str | Path) -> list[Path]:
    """The image files directly inside ``folder``, in name order (hidden files skipped)."""
    return sorted(p for p in Path(folder).iterdir() if is_image_file(p))


def scan_class_tree(root: str | Path) -> ClassTree:
    """List the images of ``root``: one class per immediate sub-folder (searched recursively).

    Images directly inside ``root`` form a class named ``""``. Hidden files
    and folders are skipped; the order is sorted, so the result is the same
    on every machine.
    """
    with _gc_paused():
        return _scan(Path(root))


@contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector: listing thousands of paths next to torch's large heap
    otherwise spends most of its time in collections that find nothing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _scan(root: Path) -> ClassTree:
    if not root.exists():
        raise DataError(f"data folder '{root}' does not exist")
    if not root.is_dir():
        raise DataError(f"'{root}' is not a folder")
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    loose = [p for p in entries if is_image_file(p)]
    classes: list[str] = [""] if loose else []
    images: list[tuple[Path, int]] = [(p, 0) for p in loose]
    for folder in (p for p in entries if p.is_dir()):
        files = sorted(_images_below(folder))
        if not files:
            continue
        classes.append(folder.name)
        images.extend((p, len(classes) - 1) for p in files)
    return ClassTree(root, tuple(classes), tuple(images))


def _images_below(top: Path) -> list[Path]:
    """Image files anywhere under ``top``, skipping hidden files and folders."""
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                found.append(Path(dirpath) / name)
    return found
