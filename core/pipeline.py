"""The stages as library calls: extract → correlate → (refine) → flow, on records and on images.

Each stage takes a :class:`~core.io.records.PairRecord` and returns it with
its own datasets added, so the CLI stages are thin loops over a record
stream, and :func:`build_predictor` chains the same calls for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backbones import DEFAULT_BACKBONE, DEFAULT_LAYERS, FeatureBackbone, build_backbone
from .consensus import softmax_over_target
from .correlation import correlate, transpose_corr
from .errors import DataError, UsageError
from .flow import match_confidence, matches_from_corr, matches_to_flow
from .images import image_to_tensor, load_image, original_size, parse_size
from .io.records import PairRecord

#: Default working size (square side in pixels) of ``extract``.
DEFAULT_SIZE = 400
#: Working size of the training-free ``nn`` predictor of ``evaluate``: chosen on
#: synthetic affine pairs of Caltech-101 training images (benchmarks/select_nn.py),
#: where 256–400 px score within noise of each other and 320 is best at α = 0.1.
NN_DEFAULT_SIZE = 320


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


# ----------------------------------------------------------------------------- extract


@dataclass
class FeatureExtractor:
    """Backbone features of images at a fixed working size.

    ``size``: square side ``N`` or ``(H, W)``; every image is resized to it
    (PIL bilinear, or ``resize="tensor"``: :func:`core.images.image_to_tensor`),
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
                rec.features["src"][layer] = _to_numpy(t[2 * i])
                rec.features["trg"][layer] = _to_numpy(t[2 * i + 1])
            rec.feature_attrs = self.layer_attrs()
            records.append(rec)
        return records

    def extract_record(self, pair_id: str, src_path: str | Path, trg_path: str | Path, name_src: str | None = None, name_trg: str | None = None) -> PairRecord:
        """Read both images, run the backbone once on the pair, return a features record."""
        names = (str(name_src if name_src is not None else src_path), str(name_trg if name_trg is not None else trg_path))
        return self.extract_records([(pair_id, src_path, trg_path, *names)])[0]


# ----------------------------------------------------------------------------- correlate


def missing_layer_error(rec: PairRecord, layer: str, model: str | None = None, why: str = "") -> UsageError:
    """The one sentence for a record lacking ``layer``: which model reads it, what the record has, the fix.

    ``why``: a clause saying why the layer could not be computed here (e.g. its image is not found).
    """
    reader, fix = (f", which {model} reads", f"extract with --model {model}") if model else ("", "re-run extract with --layers")
    why = f", {why}" if why else ""
    return UsageError(f"record '{rec.pair_id}' has no layer '{layer}'{reader} (it has {', '.join(rec.layers())}){why}; {fix}")


def record_features(
    rec: PairRecord, layers: list[str] | None, device, stage: str, model: str | None = None
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[str]]:
    """Features of a record as ``(1, C, h, w)`` tensors for ``layers`` (all when None).

    ``model``: the learned model that reads them; a missing layer's error then
    names it and the extract that gives its layers (``extract --model``).
    """
    if not rec.features["src"]:
        raise DataError(
            f"record '{rec.pair_id}' has no features (it is a '{rec.stage}' record); "
            f"'{stage}' needs the output of 'semcorr extract'"
        )
    available = rec.layers()
    layers = layers or available
    missing = [layer for layer in layers if layer not in available]
    if missing:
        raise missing_layer_error(rec, missing[0], model)
    fa = [torch.from_numpy(np.asarray(rec.features["src"][layer], dtype=np.float32)).unsqueeze(0).to(device) for layer in layers]
    fb = [torch.from_numpy(np.asarray(rec.features["trg"][layer], dtype=np.float32)).unsqueeze(0).to(device) for layer in layers]
    return fa, fb, layers


def correlate_scores(
    fa: list[torch.Tensor],
    fb: list[torch.Tensor],
    mode: str = "hypercolumn",
    normalize: bool = True,
    relu: bool = False,
    center: bool = False,
    mutual_matching: bool = False,
) -> torch.Tensor:
    """Features of both images (lists of ``(B, C_i, h_i, w_i)``) → scores ``(B, hA, wA, hB, wB)``.

    :func:`core.correlation.correlate`, then optionally NC-Net's soft mutual
    nearest-neighbour filter (negative scores clamped first).
    """
    corr = correlate(fa, fb, mode=mode, normalize=normalize, relu=relu, center=center)
    if mutual_matching:
        from .consensus import mutual_matching as soft_mutual

        corr = soft_mutual(corr.clamp_min(0))
    return corr


def correlate_record(
    rec: PairRecord,
    layers: list[str] | None = None,
    mode: str = "hypercolumn",
    normalize: bool = True,
    relu: bool = False,
    keep_features: bool = False,
    device: torch.device | str = "cpu",
    center: bool = False,
    mutual_matching: bool = False,
) -> PairRecord:
    """Add ``corr`` ``(h_src, w_src, h_trg, w_trg)`` computed from the record's features.

    ``mutual_matching`` re-weights the scores with NC-Net's soft mutual
    nearest-neighbour filter (negative scores clamped first).
    """
    fa, fb, layers = record_features(rec, layers, device, "correlate")
    corr = correlate_scores(fa, fb, mode, normalize, relu, center, mutual_matching)
    rec.corr = _to_numpy(corr[0])
    rec.corr_attrs = {
        "method": mode,
        "layers": layers,
        "l2_normalized": bool(normalize),
        "centered": bool(center),
        "mutual_matching": bool(mutual_matching),
        "relu": bool(relu),
        "backbone": rec.feature_attrs.get(layers[0], {}).get("backbone", "unknown"),
    }
    if not keep_features:
        rec.features = {"src": {}, "trg": {}}
        rec.feature_attrs = {}
    return rec


# ----------------------------------------------------------------------------- flow


def flows_from_matches(
    src_to_trg: torch.Tensor, trg_to_src: torch.Tensor, src_size: tuple[int, int], trg_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Match grids ``(1, h, w, 2)`` of both directions → pixel flows ``(H_src, W_src, 2)``, ``(H_trg, W_trg, 2)``."""
    f_st = matches_to_flow(src_to_trg.float(), src_size, trg_size)[0]
    f_ts = matches_to_flow(trg_to_src.float(), trg_size, src_size)[0]
    return _to_numpy(f_st), _to_numpy(f_ts)


def model_pixel_flows(model, m, src_size: tuple[int, int], trg_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A model's pixel flows of one pair (:meth:`CorrespondenceModel.pixel_flows`) as numpy ``(H, W, 2)`` each."""
    f_st, f_ts = model.pixel_flows(m, src_size, trg_size)
    return _to_numpy(f_st[0].float()), _to_numpy(f_ts[0].float())


def _upsample_confidence(conf: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    c = torch.nn.functional.interpolate(conf.float().unsqueeze(1), size=size, mode="bilinear", align_corners=True)
    return _to_numpy(c[0, 0])


def refined_matching(rec: PairRecord) -> dict[str, str] | None:
    """The matching rule a refined record asks for (``corr`` attrs ``matching``, ``confidence``), or None.

    ``refine`` stores the rule of the model that refined the record (NC-Net's
    and DCCNet's evaluation: softmax then argmax); a plain ``correlate``
    record has none.
    """
    method = rec.corr_attrs.get("matching")
    if method is None:
        return None
    return {"method": str(method), "confidence": str(rec.corr_attrs.get("confidence", "max"))}


def record_trg_to_src_scores(rec: PairRecord, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """The target→source scores ``(1, h_trg, w_trg, h_src, w_src)`` a record carries apart from ``corr``.

    DCCNet's refined records hold its second merge under the ``extra/`` name
    given by the ``corr`` attribute ``scores_trg_to_src``; other records hold
    none (None: the transpose of ``corr`` serves).
    """
    key = _trg_to_src_key(rec)
    if key is None:
        return None
    if key not in rec.extra:
        raise DataError(f"record '{rec.pair_id}': its corr names target→source scores 'extra/{key}', which it lacks")
    return torch.from_numpy(np.asarray(rec.extra[key], dtype=np.float32)).unsqueeze(0).to(device)


def _trg_to_src_key(rec: PairRecord) -> str | None:
    """The ``extra/`` key that the ``corr`` attribute ``scores_trg_to_src`` names, or None."""
    where = rec.corr_attrs.get("scores_trg_to_src")
    return str(where).removeprefix("extra/") if where else None


def flow_record(
    rec: PairRecord,
    method: str | None = None,
    beta: float = 50.0,
    sigma: float = 5.0,
    mutual: bool = False,
    keep_corr: bool = False,
    device: torch.device | str = "cpu",
    normalize: bool = False,
) -> PairRecord:
    """Add ``flow/src_to_trg`` and ``flow/trg_to_src`` (pixel coordinates) computed from ``corr``.

    ``method`` None: the rule of the model that refined the record
    (:func:`refined_matching`), else ``kernel-soft-argmax``. Each direction
    reads its own scores: ``corr``, and for trg→src the record's own
    target→source scores (:func:`record_trg_to_src_scores`) or the transpose.
    Confidence: the best score, or the best softmax probability when the
    refining model's rule says ``softmax``.
    """
    if rec.corr is None:
        raise DataError(
            f"record '{rec.pair_id}' has no correlation (it is a '{rec.stage}' record); "
            "pipe it through 'semcorr correlate' first, or use 'semcorr flow --model NAME' on features"
        )
    rule = refined_matching(rec)
    chosen = method or (rule["method"] if rule else "kernel-soft-argmax")
    corr = torch.from_numpy(np.asarray(rec.corr, dtype=np.float32)).unsqueeze(0).to(device)
    corr_t = record_trg_to_src_scores(rec, device)
    if corr_t is None:
        corr_t = transpose_corr(corr)
    st, ts = matches_from_corr(corr, method=chosen, beta=beta, sigma=sigma, mutual=mutual, normalize=normalize, corr_t=corr_t)
    rec.flow["src_to_trg"], rec.flow["trg_to_src"] = flows_from_matches(st, ts, rec.src_size, rec.trg_size)
    rec.flow_attrs = {
        "method": chosen,
        "beta": beta,
        "sigma": sigma,
        "mutual_nn": bool(mutual),
        "normalized_scores": bool(normalize),
        "model": "none" if rule is None else str(rec.corr_attrs.get("method", "none")),
    }
    softmax = rule is not None and rule["confidence"] == "softmax"
    for key, scores, size in (("src_to_trg", corr, rec.src_size), ("trg_to_src", corr_t, rec.trg_size)):
        rec.confidence[key] = _upsample_confidence(match_confidence(softmax_over_target(scores) if softmax else scores), size)
    if not keep_corr:
        key = _trg_to_src_key(rec)
        if key is not None:
            rec.extra.pop(key, None)
            rec.extra_attrs.pop(key, None)
        rec.corr = None
        rec.corr_attrs = {}
    return rec


def coseg_from_matches(m, flow_st: np.ndarray, flow_ts: np.ndarray, src_size: tuple[int, int], trg_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Co-segmentation masks ``(H_src, W_src)``, ``(H_trg, W_trg)`` from a model's grid masks (first pair of the batch) and pixel flows."""
    from .coseg import cosegment, upsample_mask

    return cosegment(upsample_mask(m.mask_src[0], src_size), upsample_mask(m.mask_trg[0], trg_size), flow_st, flow_ts)


def model_flow_record(rec: PairRecord, model, device: torch.device | str = "cpu", keep_inputs: bool = False) -> PairRecord:
    """Run a learned model's head on a features record; add flows (and the model's extras)."""
    needed = list(model.required_layers)
    fa, fb, _ = record_features(rec, needed, device, f"flow --model {model.name}", model=model.name)
    bb = {rec.feature_attrs.get(layer, {}).get("backbone") for layer in needed}
    if bb and bb != {model.backbone.name}:
        raise UsageError(
            f"record '{rec.pair_id}' holds {', '.join(sorted(str(b) for b in bb))} features but the {model.name} "
            f"model uses {model.backbone.name}; re-run extract with --backbone {model.backbone.name}"
        )
    with torch.no_grad():
        m = model.head(dict(zip(needed, fa)), dict(zip(needed, fb)))
        rec.flow["src_to_trg"], rec.flow["trg_to_src"] = model_pixel_flows(model, m, rec.src_size, rec.trg_size)
    rec.flow_attrs = {"model": model.name, "weights": getattr(model, "weights_id", "unknown")}
    if m.confidence_src is not None:
        rec.confidence["src_to_trg"] = _upsample_confidence(m.confidence_src, rec.src_size)
    if m.confidence_trg is not None:
        rec.confidence["trg_to_src"] = _upsample_confidence(m.confidence_trg, rec.trg_size)
    if m.mask_src is not None and m.mask_trg is not None:
        rec.mask["src"], rec.mask["trg"] = coseg_from_matches(m, rec.flow["src_to_trg"], rec.flow["trg_to_src"], rec.src_size, rec.trg_size)
    for key, value in m.extra.items():
        rec.extra[f"{model.name}/{key}"] = _to_numpy(value[0])
    if not keep_inputs:
        rec.features = {"src": {}, "trg": {}}
        rec.feature_attrs = {}
        rec.corr = None
    return rec


# ----------------------------------------------------------------------------- predictors (evaluate)


class NearestNeighbourPredictor:
    """Training-free matching: hypercolumn features → correlation → flow.

    ``predict(src, trg)`` takes PIL images and returns pixel flows
    ``(H_src, W_src, 2)`` and ``(H_trg, W_trg, 2)`` (float32 numpy).
    """

    name = "nn"

    def __init__(
        self,
        extractor: FeatureExtractor,
        method: str = "argmax",
        beta: float = 50.0,
        sigma: float = 5.0,
        mutual: bool = False,
        center: bool = True,
        mutual_matching: bool = True,
    ):
        self.extractor = extractor
        self.method, self.beta, self.sigma, self.mutual = method, beta, sigma, mutual
        self.center, self.mutual_matching = center, mutual_matching

    def describe(self) -> dict[str, Any]:
        e = self.extractor
        return {
            "model": "nn",
            "backbone": e.backbone.name,
            "backbone_weights": e.backbone.weights_id,
            "layers": e.layers,
            "size": list(e.size),
            "method": self.method,
            "beta": self.beta,
            "sigma": self.sigma,
            "mutual_nn": self.mutual,
            "centered": self.center,
            "mutual_matching": self.mutual_matching,
        }

    @torch.no_grad()
    def predict(self, src, trg) -> tuple[np.ndarray, np.ndarray]:
        e = self.extractor
        batch = torch.cat([image_to_tensor(src, e.size), image_to_tensor(trg, e.size)])
        feats = e.features(batch)
        fa = [feats[layer][:1] for layer in e.layers]
        fb = [feats[layer][1:] for layer in e.layers]
        corr = correlate_scores(fa, fb, center=self.center, mutual_matching=self.mutual_matching)
        st, ts = matches_from_corr(corr, method=self.method, beta=self.beta, sigma=self.sigma, mutual=self.mutual)
        return flows_from_matches(st, ts, (src.height, src.width), (trg.height, trg.width))


def identity_flow(from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """The flow that keeps every pixel where it is, in the shared normalised frame: ``(H, W, 2)``.

    Pixel ``(x, y)`` of an ``H × W`` image goes to ``(x·(W'−1)/(W−1), y·(H'−1)/(H−1))``
    of an ``H' × W'`` one (:mod:`core.geometry`); for images of one size it is
    the pixel identity.
    """
    from .geometry import normalized_to_pixels, pixels_to_normalized, pixel_grid

    grid = pixel_grid(*from_size, dtype=torch.float64)
    return _to_numpy(normalized_to_pixels(pixels_to_normalized(grid, from_size), to_size))


class IdentityPredictor:
    """The *Identity* baseline: no motion (points keep their coordinates; JHMDB's copy of the first frame's joints)."""

    name = "identity"

    def describe(self) -> dict[str, Any]:
        return {"model": "identity"}

    def predict(self, src, trg) -> tuple[np.ndarray, np.ndarray]:
        src_size, trg_size = (src.height, src.width), (trg.height, trg.width)
        return identity_flow(src_size, trg_size), identity_flow(trg_size, src_size)


class ModelPredictor:
    """A learned model (backbone + head) as a predictor of pixel flows.

    Images are resized as the model's evaluation code does (``model.input_resize``);
    flows come from :meth:`CorrespondenceModel.pixel_flows`, and
    :meth:`predict_with_transfer` adds the model's own keypoint transfer, if it has one.
    """

    def __init__(self, model, size: int | tuple[int, int], device: torch.device | str = "cpu"):
        self.model = model.to(device).eval()
        self.size = parse_size(size)
        self.device = torch.device(device)
        self.name = model.name

    def describe(self) -> dict[str, Any]:
        return dict(self.model.config(), size=list(self.size), weights=getattr(self.model, "weights_id", "unknown"))

    @torch.no_grad()
    def _run(self, src, trg):
        """The model's :class:`Matches` on the resized pair, and the original sizes ``((H_s, W_s), (H_t, W_t))``."""
        resize = getattr(self.model, "input_resize", "pil")
        a = image_to_tensor(src, self.size, resize).to(self.device)
        b = image_to_tensor(trg, self.size, resize).to(self.device)
        return self.model(a, b), ((src.height, src.width), (trg.height, trg.width))

    @torch.no_grad()
    def predict_with_transfer(self, src, trg, flows: bool = True):
        """``(flow_src_to_trg, flow_trg_to_src, transfer)``: ``transfer(points (N, 2), direction)``
        gives the model's own transferred pixels ``(N, 2)``, or is None when the model has no
        rule of its own. ``flows=False`` skips the flows (None) when there is such a rule."""
        m, sizes = self._run(src, trg)

        @torch.no_grad()
        def transfer(points: np.ndarray, direction: str) -> np.ndarray:
            pts = torch.as_tensor(np.asarray(points, dtype=np.float64)).reshape(-1, 2)
            return self.model.transfer_keypoints(m, pts, direction, *sizes).cpu().numpy().astype(np.float64)

        has_rule = self.model.transfer_keypoints(m, torch.zeros(0, 2, dtype=torch.float64), "src->trg", *sizes) is not None
        if has_rule and not flows:
            return None, None, transfer
        st, ts = model_pixel_flows(self.model, m, *sizes)
        return st, ts, transfer if has_rule else None

    def predict(self, src, trg) -> tuple[np.ndarray, np.ndarray]:
        st, ts, _ = self.predict_with_transfer(src, trg)
        return st, ts

    @torch.no_grad()
    def predict_coseg(self, src, trg) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Flows and co-segmentation masks: ``(flow_st, flow_ts, mask_src (H_s, W_s), mask_trg (H_t, W_t))``."""
        m, sizes = self._run(src, trg)
        if m.mask_src is None or m.mask_trg is None:
            raise UsageError(f"{self.name} predicts no masks here; co-segmentation needs SFNet with mask_head=true")
        st, ts = model_pixel_flows(self.model, m, *sizes)
        ms, mt = coseg_from_matches(m, st, ts, *sizes)
        return st, ts, ms, mt


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is a usage error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is available (use --device auto or cpu)")
    if device != "cpu" and not device.startswith("cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, not '{device}'")
    return torch.device(device)


def build_predictor(
    model: str = "nn",
    backbone: str = DEFAULT_BACKBONE,
    backbone_weights: str | Path | None = "default",
    weights: str | Path | None = "default",
    size: int | tuple[int, int] | None = None,
    device: str | torch.device = "auto",
    method: str = "argmax",
    layers: list[str] | None = None,
    beta: float = 50.0,
    sigma: float = 5.0,
    mutual: bool = False,
    **model_options: Any,
):
    """A predictor with ``predict(src_pil, trg_pil) -> (flow_src_to_trg, flow_trg_to_src)``.

    ``model="nn"``: training-free matching: centred hypercolumn features,
    cosine correlation, NC-Net's soft mutual filter, then ``method``;
    ``model="identity"``: the no-motion baseline (:class:`IdentityPredictor`);
    otherwise a learned model from :mod:`core.models` with ``weights``.
    """
    if model == "identity":
        return IdentityPredictor()
    dev = resolve_device(device)
    if model == "nn":
        ext = FeatureExtractor.create(backbone, backbone_weights, layers, size or NN_DEFAULT_SIZE, dev)
        return NearestNeighbourPredictor(ext, method, beta, sigma, mutual)
    from .models import build_model

    m = build_model(model, backbone=backbone, backbone_weights=backbone_weights, weights=weights, **model_options)
    return ModelPredictor(m, size or m.input_size, dev)
