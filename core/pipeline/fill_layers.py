"""Feature layers a model reads that a record lacks, computed from the record's own images.

``semcorr extract a.jpg b.jpg`` stores the backbone's hypercolumn layers; SFNet
also reads ``features.17`` and MMNet every block. Rather than refuse such a
record, ``flow`` with a model, ``refine`` and ``show`` hand it to a
:class:`LayerFiller`: it reads the record's images again
(:meth:`semcorr.io.records.PairRecord.image_path`), runs the backbone with the
weights and at the working size that the stored layers record, and adds the
missing layers — the numbers ``extract`` for that model would have stored. One
backbone per (backbone, weights) is built and kept for the whole stream.

A record whose images cannot be read, or whose features came from weights
that cannot be rebuilt from their id (``random``, a ``file:`` id), keeps the
missing-layer error of :func:`semcorr.pipeline.features.missing_layer_error`, with the
reason added.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..backbones import FeatureBackbone, build_backbone, weights_arg_for_id
from ..errors import DataError, param
from ..io.records import PairRecord
from .extract import FeatureExtractor
from .features import missing_layer_error


def feature_provenance(rec: PairRecord) -> tuple[str, str, tuple[int, int]] | None:
    """``(backbone, weights id, (H', W'))`` shared by all of a record's layers; None when unsaid or mixed."""
    seen = set()
    for layer in rec.layers():
        a = rec.feature_attrs.get(layer, {})
        size = a.get("input_size")
        if not a.get("backbone") or not a.get("weights") or not isinstance(size, (list, tuple)) or len(size) != 2:
            return None
        seen.add((str(a["backbone"]), str(a["weights"]), (int(size[0]), int(size[1]))))
    return seen.pop() if len(seen) == 1 else None


def _named(layers: list[str]) -> str:
    """``a, b, c``, or ``13 layers (a, …, z)`` for a long list."""
    return ", ".join(layers) if len(layers) <= 3 else f"{len(layers)} layers ({layers[0]}, …, {layers[-1]})"


class LayerFiller:
    """Adds the layers a model reads to records that lack them (see the module docstring).

    ``notify(text)`` is called once, on the first record filled, with one
    sentence saying what is computed and how to avoid it (parameters marked
    with :func:`semcorr.errors.param`, for a caller to name as it likes).
    """

    def __init__(self, device: torch.device | str = "cpu", notify: Callable[[str], None] | None = None):
        self.device = torch.device(device)
        self.notify = notify
        self.filled = 0
        self._backbones: dict[tuple[str, str], FeatureBackbone] = {}

    def _backbone(self, name: str, weights: str) -> FeatureBackbone:
        key = (name, weights)
        if key not in self._backbones:
            self._backbones[key] = build_backbone(name, weights).to(self.device).eval()
        return self._backbones[key]

    def fill(self, rec: PairRecord, layers: list[str], model: str, resize: str = "pil") -> PairRecord:
        """``rec`` with every layer of ``layers`` present (computed when missing); unchanged when none is.

        ``resize``: how the model's own evaluation resizes its inputs
        (``model.input_resize``). When some layers are missing and the
        stored ones were made with another resize (MMNet resizes the tensor
        without antialiasing), all of ``layers`` are computed again, so the
        model never reads features of two resizes.
        A record without any features is returned as is (the reading stage
        names what it needs). Raises the missing-layer :class:`UsageError`
        when the layers cannot be computed, and :class:`DataError` when an
        image no longer has the size the record says.
        """
        missing = [layer for layer in layers if layer not in rec.layers()]
        if not missing or not rec.features["src"]:
            return rec
        if any(rec.feature_attrs.get(layer, {}).get("resize", "pil") != resize for layer in layers if layer not in missing):
            missing = list(layers)
        prov = feature_provenance(rec)
        if prov is None:
            raise missing_layer_error(rec, missing[0], model, "and its layers do not say which backbone, weights and size made them")
        backbone, weights_id, size = prov
        weights = weights_arg_for_id(weights_id)
        if weights is None:
            raise missing_layer_error(rec, missing[0], model, f"and its features come from weights '{weights_id}', which cannot be rebuilt here")
        paths = (rec.image_path("src"), rec.image_path("trg"))
        for path in paths:
            if not path.is_file():
                raise missing_layer_error(rec, missing[0], model, f"and its image '{path}' is not there to compute it from")
        extractor = FeatureExtractor(self._backbone(backbone, weights), missing, size, self.device, resize)
        extractor.check_size()
        new = extractor.extract_records([(rec.pair_id, paths[0], paths[1], rec.src_path, rec.trg_path)])[0]
        for path, now, then in zip(paths, (new.src_size, new.trg_size), (rec.src_size, rec.trg_size)):
            if now != then:
                raise DataError(
                    f"record '{rec.pair_id}': image '{path}' is {now[1]}x{now[0]} pixels now, "
                    f"not {then[1]}x{then[0]} as when it was extracted"
                )
        for side in ("src", "trg"):
            rec.features[side].update(new.features[side])
        rec.feature_attrs.update(new.feature_attrs)
        if self.filled == 0 and self.notify is not None:
            self.notify(
                f"computing {_named(missing)}, which {model} reads and the records lack, from each record's images "
                f"({backbone}, {weights_id}, {size[0]}x{size[1]}); extract with {param('model')} {model} to store them instead"
            )
        self.filled += 1
        return rec


__all__ = ["LayerFiller", "feature_provenance"]
