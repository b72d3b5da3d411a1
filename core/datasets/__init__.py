"""Benchmark readers, each reading its dataset's own published layout (no conversion step).

``open_dataset(name, root, split=None, **options)`` opens one by name:

========================  ===========================================  =================
name                      reader                                       records
========================  ===========================================  =================
``pf-willow``             :class:`~.pf_willow.PFWillow`                :class:`KeypointPair`
``pf-pascal``             :class:`~.pf_pascal.PFPascal`                :class:`KeypointPair`
``spair``                 :class:`~.spair.SPair71k`                    :class:`KeypointPair`
``tss``                   :class:`~.tss.TSS`                           :class:`FlowPair`
``caltech-101``           :class:`~.caltech.Caltech101`                :class:`MaskPair`
``cub``                   :class:`~.cub.CUB200`                        :class:`KeypointPair`
``jhmdb``                 :class:`~.jhmdb.JHMDB`                       :class:`~.jhmdb.Clip`
``custom``                :class:`~.custom.CustomPairs`                :class:`KeypointPair`
========================  ===========================================  =================

Every reader has ``len()``, indexing, iteration, ``categories`` and
``entries`` (pair ids and categories without loading anything). A wrong root
raises :class:`~semcorr.errors.DataError` naming the missing file and where the
dataset is obtained. Coordinates are 0-based pixel centres; see
:mod:`semcorr.datasets.base` for the ``coords`` option.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UsageError
from .base import COORDS, PASCAL_CLASSES, FlowPair, ImagePair, KeypointPair, MaskPair, PairDataset, PairEntry, keypoint_bbox
from .caltech import CALTECH_CLASSES, Caltech101, polygon_mask
from .cub import CUB200
from .custom import CustomPairs
from .jhmdb import JHMDB, Clip
from .pf_pascal import PFPascal
from .pf_willow import PFWillow
from .spair import SPair71k
from .tss import TSS

DATASETS: dict[str, type[PairDataset]] = {
    "pf-willow": PFWillow,
    "pf-pascal": PFPascal,
    "spair": SPair71k,
    "tss": TSS,
    "caltech-101": Caltech101,
    "cub": CUB200,
    "jhmdb": JHMDB,
    "custom": CustomPairs,
}
ALIASES = {"spair-71k": "spair", "caltech": "caltech-101", "caltech101": "caltech-101", "pfwillow": "pf-willow", "pfpascal": "pf-pascal", "cub-200-2011": "cub", "cub200": "cub"}


def dataset_class(name: str) -> type[PairDataset]:
    """The reader class registered as ``name`` (aliases such as ``spair-71k`` accepted)."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise UsageError(f"unknown dataset '{name}'; choose one of {', '.join(DATASETS)}")
    return DATASETS[key]


def open_dataset(name: str, root: str | Path, split: str | None = None, **options: Any) -> PairDataset:
    """Open benchmark ``name`` at ``root``; ``options`` go to the reader (``coords``, ``pairs``, …).

    Options a reader does not take are refused with a :class:`UsageError`.
    """
    import inspect

    cls = dataset_class(name)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "root", "split"}
    unknown = sorted(k for k, v in options.items() if k not in accepted and v is not None)
    if unknown:
        raise UsageError(f"dataset {cls.name} takes no option '{unknown[0]}' (it takes: {', '.join(sorted(accepted)) or 'none'})")
    return cls(root, split=split, **{k: v for k, v in options.items() if k in accepted and v is not None})


__all__ = [
    "open_dataset",
    "dataset_class",
    "DATASETS",
    "COORDS",
    "PASCAL_CLASSES",
    "CALTECH_CLASSES",
    "KeypointPair",
    "FlowPair",
    "MaskPair",
    "PairDataset",
    "PairEntry",
    "PFWillow",
    "PFPascal",
    "SPair71k",
    "TSS",
    "Caltech101",
    "CUB200",
    "JHMDB",
    "Clip",
    "ImagePair",
    "CustomPairs",
    "keypoint_bbox",
    "polygon_mask",
]
