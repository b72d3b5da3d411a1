"""The ``extract`` stage: images → features records, at a fixed working size.

:class:`FeatureExtractor` runs a backbone on image pairs; :func:`build_extractor`
chooses its backbone and layers, for a model when one is named (the layers the
model reads, and a fine-tuned backbone its weights carry); :func:`extract_pairs`
turns a list of pairs into records, a batch at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..backbones import DEFAULT_BACKBONE, DEFAULT_LAYERS, FeatureBackbone, build_backbone
from ..checks import BadRow, check_layer_choice
from ..errors import DataError, UsageError, param
from ..images import image_to_tensor, load_image, original_size, parse_size
from ..io.records import IMAGE_ROOT_ATTR, PairRecord
from ..models import build_model
from .features import to_numpy

#: Default working size (square side in pixels) of ``extract``.
DEFAULT_SIZE = 400


@dataclass
class FeatureExtractor:
    """Backbone features of images at a fixed working size.

    ``size``: square side ``N`` or ``(H, W)``; every image is resized to it
    (PIL bilinear, or ``resize="tensor"``: :func:`semcorr.images.image_to_tensor`),
    whatever its own size, as the published protocols do.
    """

    backbone: FeatureBackbone
    layers: list[str]
    size: tuple[int, int]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    resize: str = "pil"

    @classmethod
    def create(
        cls,
        backbone: str = DEFAULT_BACKBONE,
        weights: str | Path | None = "default",
        layers: list[str] | None = None,
        size: int | tuple[int, int] = DEFAULT_SIZE,
        device: torch.device | str = "cpu",
    ) -> FeatureExtractor:
        bb = build_backbone(backbone, weights).to(device)
        layers = list(layers) if layers else list(DEFAULT_LAYERS[backbone])
        for layer in layers:
            bb.resolve(layer)
        ext = cls(bb, layers, parse_size(size), torch.device(device))
        ext.check_size()
        return ext

    def check_size(self) -> None:
        """Refuse a working size smaller than one cell of the coarsest layer."""
        coarsest = max(self.backbone.stride(layer) for layer in self.layers)
        if min(self.size) < coarsest:
            raise UsageError(f"working size {self.size[0]}x{self.size[1]} is smaller than one feature cell ({coarsest} px)")

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, 3, H, W)`` normalised images → ``{layer: (B, C, h, w)}``."""
        return self.backbone(images.to(self.device), self.layers)

    def layer_attrs(self) -> dict[str, dict[str, Any]]:
        """The per-layer attributes stored with each features dataset."""
        return {
            layer: {
                "backbone": self.backbone.name,
                "weights": self.backbone.weights_id,
                "input_size": list(self.size),
                "resize": self.resize,
                "stride": self.backbone.stride(layer),
            }
            for layer in self.layers
        }

    def load(self, path: str | Path):
        """Read an image for this extractor; refuse one smaller than a feature cell."""
        img = load_image(path, reduce_to=max(self.size) if self.resize == "pil" else None)
        h, w = original_size(img)
        cell = max(self.backbone.stride(layer) for layer in self.layers)
        if h < cell or w < cell:
            raise DataError(f"image '{path}' is {w}x{h} pixels, smaller than one feature cell ({cell} px)")
        return img

    def extract_records(self, items: list[tuple[str, str | Path, str | Path, str, str]]) -> list[PairRecord]:
        """Features records for several pairs in one backbone pass.

        items: ``(pair_id, src_path, trg_path, src_name, trg_name)``; names are
        what the record stores as ``src_path``/``trg_path``.
        """
        images = [(self.load(s), self.load(t)) for _, s, t, _, _ in items]
        batch = torch.cat([image_to_tensor(im, self.size, self.resize) for pair in images for im in pair])
        feats = self.features(batch)
        records = []
        for i, ((pid, _, _, sname, tname), (src, trg)) in enumerate(zip(items, images)):
            rec = PairRecord(pid, str(sname), str(tname), original_size(src), original_size(trg))
            for layer, t in feats.items():
                rec.features["src"][layer] = to_numpy(t[2 * i])
                rec.features["trg"][layer] = to_numpy(t[2 * i + 1])
            rec.feature_attrs = self.layer_attrs()
            records.append(rec)
        return records

    def extract_record(self, pair_id: str, src_path: str | Path, trg_path: str | Path, name_src: str | None = None, name_trg: str | None = None) -> PairRecord:
        """Read both images, run the backbone once on the pair, return a features record."""
        names = (str(name_src if name_src is not None else src_path), str(name_trg if name_trg is not None else trg_path))
        return self.extract_records([(pair_id, src_path, trg_path, *names)])[0]


def _has_shipped_weights(model: str, backbone: str) -> bool:
    from ..weights import shipped_weights_path

    return shipped_weights_path(model, backbone).is_file()


def build_extractor(
    backbone: str | None = None,
    backbone_weights: str | Path | None = "default",
    layers: list[str] | None = None,
    size: int | tuple[int, int] = DEFAULT_SIZE,
    device: torch.device | str = "cpu",
    model: str | None = None,
    weights: str | Path | None = None,
) -> FeatureExtractor:
    """The extractor of ``extract``: a backbone's layers, or exactly the layers (and backbone) ``model`` reads.

    With ``model``: the layers come from the model; its ``weights`` (default:
    the shipped ones, when semcorr ships weights for it on this backbone)
    also give a fine-tuned backbone and the model's own input resize (MMNet's);
    without weights the plain ``backbone`` (ImageNet ``backbone_weights``)
    extracts the model's layers. ``layers`` and ``weights`` are refused with a
    model and without one, respectively.
    """
    check_layer_choice(model, weights, layers)
    dev = torch.device(device)
    if model is not None:
        if weights is None and _has_shipped_weights(model, backbone or DEFAULT_BACKBONE):
            weights = "default"  # the shipped weights decide the layers (and any fine-tuned backbone)
        if weights is not None:
            kwargs = {"backbone": backbone} if backbone else {}
            m = build_model(model, backbone_weights=backbone_weights, weights=weights, **kwargs)
            extractor = FeatureExtractor(m.backbone.to(dev).eval(), list(m.required_layers), parse_size(size), dev, m.input_resize)
            extractor.check_size()
            return extractor
        m = build_model(model, backbone=backbone or DEFAULT_BACKBONE, backbone_weights="random", weights=None)
        layers, backbone = list(m.required_layers), m.backbone.name
    return FeatureExtractor.create(backbone or DEFAULT_BACKBONE, backbone_weights, layers, size, dev)


def extract_pairs(
    extractor: FeatureExtractor,
    pairs: Sequence,
    batch_size: int = 1,
    listing=None,
    skip_bad: bool = False,
    image_root: str | Path | None = None,
) -> Iterator[PairRecord]:
    """Features records of ``pairs`` (:class:`semcorr.io.pair_list.ImagePair`), ``batch_size`` at a time.

    A batch that fails (an image that is truncated past its header) is redone
    pair by pair, so the error names the pair list's row (``listing``: the
    :class:`semcorr.io.pair_list.PairList` the pairs come from); with ``skip_bad`` the
    pair joins ``listing.bad`` and the others go on. ``image_root``: stored
    with each record, so later stages find relative image paths.
    """

    def items(chunk):
        return [(p.pair_id, p.src_path, p.trg_path, p.src_name, p.trg_name) for p in chunk]

    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        try:
            records = extractor.extract_records(items(chunk)) if len(chunk) > 1 else None
        except DataError:
            records = None
        if records is None:
            records = []
            for pair in chunk:
                try:
                    records += extractor.extract_records(items([pair]))
                except DataError as exc:
                    if listing is None:
                        raise
                    bad = BadRow(int(pair.pair_id), f"{listing.where(pair)}: {exc}")
                    if not skip_bad:
                        raise DataError(f"{bad.message} ({param('skip_bad')} goes on past bad pairs)") from None
                    listing.bad.append(bad)
        for rec in records:
            if image_root is not None:
                rec.attrs[IMAGE_ROOT_ATTR] = str(image_root)
            yield rec
