"""Predictors for ``evaluate`` and ``propagate``: image pairs → pixel flows, by the same stages.

Each has ``predict(src, trg)`` on PIL images → ``(flow_src_to_trg, flow_trg_to_src)``
(float32 numpy ``(H_src, W_src, 2)``, ``(H_trg, W_trg, 2)``) and ``describe()``;
:func:`build_predictor` makes one by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..backbones import DEFAULT_BACKBONE
from ..errors import UsageError
from ..flow import matches_from_corr
from ..geometry import normalized_to_pixels, pixel_grid, pixels_to_normalized
from ..images import image_to_tensor, parse_size
from ..models import build_model
from ..models.sfnet import sfnet_published_flow
from ..scores import correlate_scores
from .device import resolve_device
from .extract import FeatureExtractor
from .features import to_numpy
from .flow import coseg_from_matches, flows_from_matches, model_pixel_flows

#: Working size of the training-free ``nn`` predictor of ``evaluate``: chosen on
#: synthetic affine pairs of Caltech-101 training images (benchmarks/select_nn.py),
#: where 256–400 px score within noise of each other and 320 is best at α = 0.1.
NN_DEFAULT_SIZE = 320



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
    of an ``H' × W'`` one (:mod:`semcorr.geometry`); for images of one size it is
    the pixel identity.
    """
    grid = pixel_grid(*from_size, dtype=torch.float64)
    return to_numpy(normalized_to_pixels(pixels_to_normalized(grid, from_size), to_size))


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


class SFNetPublishedPredictor:
    """A predictor (``predict(src_pil, trg_pil)``) running :func:`sfnet_published_flow`.

    Same interface as :class:`ModelPredictor`: returns float32
    numpy pixel flows ``(H_src, W_src, 2)`` and ``(H_trg, W_trg, 2)``.
    """

    def __init__(self, model, device: torch.device | str = "cpu", size: int = 320, pad: int = 16):
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.size, self.pad = size, pad
        self.name = model.name

    def describe(self) -> dict[str, Any]:
        return dict(self.model.config(), size=[self.size, self.size], weights=self.model.weights_id,
                    input=f"sfnet-published: resize {self.size - 2 * self.pad}, zero-pad {self.pad}, crop grid border")

    def predict(self, src: Image.Image, trg: Image.Image):
        flow_s2t, flow_t2s = sfnet_published_flow(self.model, src, trg, self.size, self.pad)
        return flow_s2t[0].float().numpy(), flow_t2s[0].float().numpy()


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
    model_input: str = "model",
    **model_options: Any,
):
    """A predictor with ``predict(src_pil, trg_pil) -> (flow_src_to_trg, flow_trg_to_src)``.

    ``model="nn"``: training-free matching: centred hypercolumn features,
    cosine correlation, NC-Net's soft mutual filter, then ``method``;
    ``model="identity"``: the no-motion baseline (:class:`IdentityPredictor`);
    otherwise a learned model from :mod:`semcorr.models` with ``weights``.
    ``model_input="sfnet-published"`` (a protocol's :attr:`~semcorr.protocols.Protocol.model_input`)
    runs SFNet on its authors' test input (:class:`SFNetPublishedPredictor`); other models keep their own.
    """
    if model == "identity":
        return IdentityPredictor()
    dev = resolve_device(device)
    if model == "nn":
        ext = FeatureExtractor.create(backbone, backbone_weights, layers, size or NN_DEFAULT_SIZE, dev)
        return NearestNeighbourPredictor(ext, method, beta, sigma, mutual)
    m = build_model(model, backbone=backbone, backbone_weights=backbone_weights, weights=weights, **model_options)
    if model == "sfnet" and model_input == "sfnet-published":
        return SFNetPublishedPredictor(m, dev, parse_size(size or m.input_size)[0])
    return ModelPredictor(m, size or m.input_size, dev)
