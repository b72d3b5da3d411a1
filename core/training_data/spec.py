"""The ``--data`` / ``--val`` SPEC syntax: which files a training run reads.

::

    folder:PATH[,masks=DIR]     class-per-folder image tree (e.g. Caltech-101's
                                101_ObjectCategories/); optional foreground masks
                                (PASCAL-VOC-style segmentation PNGs) in DIR
    voc:ROOT[:SPLIT]            a PASCAL VOC devkit year folder (JPEGImages/,
                                SegmentationClass/, ImageSets/Segmentation/SPLIT.txt)
    pf-pascal:ROOT[:SPLIT]      PF-PASCAL keypoint pairs (semcorr.datasets reader)
    spair:ROOT[:SPLIT]          SPair-71k keypoint pairs (semcorr.datasets reader)
    cub:ROOT[:SPLIT]            CUB-200-2011 keypoint pairs drawn from the split
                                (semcorr.datasets reader; train or test)
    PATH                        shorthand for folder:PATH

SPLIT defaults to ``train`` for ``--data`` and ``val`` for ``--val``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError

#: Spec kinds → what they hold.
DATA_KINDS = {
    "folder": "class-per-folder image tree",
    "voc": "PASCAL VOC segmentation images and masks",
    "pf-pascal": "PF-PASCAL keypoint-annotated pairs",
    "spair": "SPair-71k keypoint-annotated pairs",
    "cub": "CUB-200-2011 keypoint-annotated pairs",
}
#: Kinds whose ROOT may be followed by ``:SPLIT``.
SPLIT_KINDS = ("voc", "pf-pascal", "spair", "cub")
#: Options accepted after the path as ``,key=value``.
SPEC_OPTIONS = {"folder": ("masks",), "voc": (), "pf-pascal": (), "spair": (), "cub": ()}
KNOWN_SPLITS = ("train", "trn", "val", "test", "trainval")


@dataclass(frozen=True)
class DataSpec:
    """A parsed data SPEC: ``kind``, ``root`` folder, optional ``split`` and options."""

    kind: str
    root: Path
    split: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    text: str = ""

    def with_default_split(self, split: str) -> "DataSpec":
        """The same spec with ``split`` filled in when the kind takes one and none was given."""
        if self.kind not in SPLIT_KINDS or self.split is not None:
            return self
        return DataSpec(self.kind, self.root, split, dict(self.options), self.text)

    def describe(self) -> str:
        split = f" ({self.split} split)" if self.split else ""
        return f"{DATA_KINDS[self.kind]} at {self.root}{split}"


def _split_options(kind: str, rest: str) -> tuple[str, dict[str, str]]:
    """Peel trailing ``,key=value`` options (known keys only) off ``rest``."""
    options: dict[str, str] = {}
    while "," in rest:
        head, tail = rest.rsplit(",", 1)
        key, eq, value = tail.partition("=")
        if not eq or key.strip() not in SPEC_OPTIONS.get(kind, ()):
            if eq:
                allowed = ", ".join(SPEC_OPTIONS.get(kind, ())) or "none"
                raise UsageError(f"data spec option '{key.strip()}' is not known for {kind} (allowed: {allowed})")
            break
        if not value.strip():
            raise UsageError(f"data spec option '{key.strip()}' needs a value")
        options[key.strip()] = value.strip()
        rest = head
    return rest, options


def parse_data_spec(text: str) -> DataSpec:
    """Parse a SPEC string (see the module docstring); does not touch the disk."""
    if not text or not text.strip():
        raise UsageError("the data spec is empty; use e.g. folder:PATH or pf-pascal:ROOT:train")
    text = text.strip()
    kind, sep, rest = text.partition(":")
    if not sep or kind not in DATA_KINDS:
        if sep and len(kind) > 1 and "/" not in kind and kind.replace("-", "").isalnum():
            raise UsageError(f"unknown data kind '{kind}' in '{text}'; use one of {', '.join(DATA_KINDS)}")
        kind, rest = "folder", text
    rest, options = _split_options(kind, rest)
    split = None
    if kind in SPLIT_KINDS and ":" in rest:
        head, tail = rest.rsplit(":", 1)
        if tail in KNOWN_SPLITS:
            rest, split = head, tail
        elif tail and "/" not in tail:
            raise UsageError(f"unknown split '{tail}' in '{text}'; use one of {', '.join(KNOWN_SPLITS)}")
    if not rest:
        raise UsageError(f"the data spec '{text}' names no folder")
    return DataSpec(kind, Path(rest).expanduser(), split, options, text)
