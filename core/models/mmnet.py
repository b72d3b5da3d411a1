"""MMNet: multi-scale matching network (Zhao et al., ICCV 2021).

A composition of :mod:`semcorr.mmnet_multiscale` pieces::

    backbone (every block) → MultiScaleEncoder (per-block enhancement, stage
    sums, local self-attention, top-down fusion) → coarse-to-fine 4D
    correlation S_l = S̃_l + U(S_{l+1}) → matches at the output level

Defaults follow the public code (wintersun661/MMNet, ``models/Model.py`` and
``test.py``): nearest 4D upsampling (``upsample="bicubic"`` is the paper's),
output at level 1 (stride 8 — the public ``--resolution 2``), source→target
volume ``S`` and target→source volume ``Sᵀ``, and, with ``matching="argmax"``,
the public keypoint transfer (``utils/geometry.predict_kps``,
:func:`transfer_points`): the volume's rows sampled bilinearly at the point
(``x·w/W``, no half-pixel shift), argmax over the other image's cells, cell
``j`` mapped back to pixel ``j·W'/w'``. Flows are that rule at every pixel;
evaluation transfers keypoints with it directly (:meth:`MMNet.transfer_keypoints`).
Images are resized as the public dataset code does (``F.interpolate``
bilinear, no antialiasing).

Memory: inference builds the volumes from the coarsest level down to the
output level only; when the output volume has more than ``max_volume`` scores
it is never built and matches are computed a block of source cells at a time.
Training never builds a level's volume with gradients: the loss samples
correlation rows at the keypoints (:func:`semcorr.mmnet_multiscale.correlation_rows`),
the coarser levels' volumes being needed detached only.
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import Any

import torch

from ..backbones import DEFAULT_LAYERS, FeatureBackbone, block_layers, build_backbone
from ..correlation import transpose_corr
from ..errors import UsageError, WeightsError
from ..flow import argmax_matches, kernel_soft_argmax_matches, match_confidence, soft_argmax_matches
from ..geometry import pixel_grid
from ..losses.mmnet import multiscale_keypoint_loss
from ..mmnet_multiscale import UPSAMPLE_MODES, MultiScaleEncoder, chunked_matches, coarse_to_fine_volumes, correlation_rows
from ..pseudo_labels import mutual_nn_keypoints, teacher_scores
from ..weights import load_state_dict_file, weights_file_id
from .base import CorrespondenceModel, Matches, load_resolved, matches_from_scores
from .pretrained import DEFAULT_SPEC, ResolvedWeights, find_shipped, released_weights, resolve

log = logging.getLogger(__name__)

MATCHING_METHODS = ("argmax", "kernel-soft-argmax", "soft-argmax")
#: Where training keypoints come from: the batch (annotated or synthetic) or a teacher.
SUPERVISIONS = ("keypoints", "pseudo")
#: Teachers of pseudo supervision: the training-free matcher, or the shipped NC-Net of the backbone.
TEACHERS = ("nn", "ncnet")
#: Score rows computed at once by the chunked matcher (``chunk · hB · wB`` ≤ this).
CHUNK_SCORES = 1 << 24


class MMNet(CorrespondenceModel):
    """MMNet over a :class:`FeatureBackbone` whose blocks :func:`block_layers` lists.

    Options (all builder keyword arguments, recorded by :meth:`config`):

    * ``upsample``: ``"nearest"`` (public code) or ``"bicubic"`` (paper) 4D upsampling;
    * ``output_level``: level read at test time, 0 = finest (stride 4), 1 = stride 8 (default);
    * ``matching``: ``"argmax"`` (default: per-cell argmax matches, and the public
      keypoint transfer for flows and evaluation, :func:`transfer_points`),
      ``"kernel-soft-argmax"`` or ``"soft-argmax"`` (flows from the match grids);
    * ``train_backbone``: fine-tune the backbone (its weights then go into checkpoints);
    * ``supervision``: ``"keypoints"`` (default: the batch's annotated or synthetic
      keypoints, as the paper) or ``"pseudo"`` (same-class pairs without
      annotations; each pair's ``pseudo_points`` most confident mutual nearest
      neighbours of a teacher's scores become its keypoints —
      :mod:`semcorr.pseudo_labels`);
    * ``teacher`` (pseudo supervision only): ``"nn"`` (default: the training-free
      matcher on the current backbone's :data:`DEFAULT_LAYERS`) or ``"ncnet"``
      (the NC-Net shipped for the backbone, frozen, on its own copy of the
      backbone, its refined correlation as the scores). It is used in training
      only, never saved in checkpoints;
    * ``max_volume``: most scores ``B·hA·wA·hB·wB`` built at once at the output level
      before switching to chunked matching (a memory knob, not recorded).
    """

    name = "mmnet"
    train_data = "keypoints"
    train_defaults: dict[str, Any] = {
        "optimizer": "sgd",
        "lr": 5e-4,
        "momentum": 0.9,
        "weight_decay": 2e-4,
        "batch_size": 5,
        "iterations": 30000,
        "lr_schedule": {"type": "step", "step_size": 10000, "gamma": 0.1, "unit": "iteration"},
        "image_size": 320,
    }
    input_size = 320
    input_resize = "tensor"  # the public dataset code: F.interpolate(bilinear, align_corners=False)
    #: The backbone's learning rate relative to the head's (``param_groups``).
    backbone_lr_ratio = 0.01
    #: ``max_volume`` is a memory knob, not architecture.
    unrecorded_options = ("max_volume",)
    #: The authors' released file may be a bare ``.safetensors`` (no sidecar).
    reads_bare_safetensors = True

    def __init__(
        self,
        backbone: FeatureBackbone,
        upsample: str = "nearest",
        output_level: int = 1,
        matching: str = "argmax",
        train_backbone: bool = True,
        max_volume: int = 1 << 25,
        backbone_weights: str = "default",
        supervision: str = "keypoints",
        pseudo_points: int = 32,
        teacher: str = "nn",
    ):
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise UsageError(f"unknown upsampling '{upsample}'; choose one of {', '.join(UPSAMPLE_MODES)}")
        if matching not in MATCHING_METHODS:
            raise UsageError(f"unknown matching '{matching}'; choose one of {', '.join(MATCHING_METHODS)}")
        if supervision not in SUPERVISIONS:
            raise UsageError(f"unknown supervision '{supervision}'; choose one of {', '.join(SUPERVISIONS)}")
        if isinstance(pseudo_points, bool) or not isinstance(pseudo_points, int) or pseudo_points < 1:
            raise UsageError(f"pseudo_points must be a positive integer, got {pseudo_points!r}")
        if teacher not in TEACHERS:
            raise UsageError(f"unknown teacher '{teacher}'; choose one of {', '.join(TEACHERS)}")
        if teacher != "nn" and supervision != "pseudo":
            raise UsageError(f"teacher={teacher} needs supervision=pseudo (keypoint supervision has no teacher)")
        if teacher == "ncnet" and find_shipped("ncnet", backbone.name) is None:
            raise UsageError(f"teacher=ncnet needs the NC-Net weights shipped for backbone {backbone.name}; there are none")
        self.backbone = backbone
        self.stages = block_layers(backbone.name)
        if not 0 <= output_level < len(self.stages):
            raise UsageError(f"output_level must be between 0 and {len(self.stages) - 1}, got {output_level}")
        self.strides = [backbone.stride(stage[0]) for stage in self.stages]
        self.encoder = MultiScaleEncoder(
            self.stages, [[backbone.channels(layer) for layer in stage] for stage in self.stages], self.strides
        )
        self.upsample = upsample
        self.output_level = output_level
        self.matching = matching
        self.train_backbone = bool(train_backbone)
        self.max_volume = int(max_volume)
        self.backbone_weights = str(backbone_weights)
        self.supervision = supervision
        self.pseudo_points = pseudo_points
        self.teacher = teacher
        #: Training data the trainer opens: keypoint pairs, or same-class pairs for pseudo keypoints.
        self.train_data = "weak" if supervision == "pseudo" else "keypoints"  # type: ignore[misc]
        self.teacher_layers = list(DEFAULT_LAYERS[backbone.name]) if backbone.name in DEFAULT_LAYERS else []
        self.backbone.requires_grad_(self.train_backbone)
        #: Where the weights came from: ``"fresh"`` or ``"[released-]file:<name>:<sha256[:12]>"``
        #: (:func:`semcorr.models.pretrained.resolve`).
        self.weights_id = "fresh"

    # ------------------------------------------------------------------ interface

    @property
    def required_layers(self) -> list[str]:
        return [layer for stage in self.stages for layer in stage]

    def config(self) -> dict[str, Any]:
        return {**super().config(), "backbone_weights": self.backbone_weights, **self.recorded_options()}

    @property
    def supervision_summary(self) -> str:
        if self.supervision == "pseudo":
            return f"pseudo keypoints from the {self.teacher} teacher"
        return "keypoint supervision"

    @classmethod
    def read_released(cls, path: Path, backbone: str | None):
        """The authors' released ``.pth`` (a full public ``state_dict``) under this model's names.

        Read safely (:func:`semcorr.weights.load_state_dict_file`); renamed by
        :func:`map_public_state_dict` on a skeleton of the model (no weights
        initialised); the weights the public forward never calls are logged in
        one line. A file already in this model's layout (no sidecar) loads as it is.
        """
        state = load_state_dict_file(path)
        if _is_own_state(state):
            return ResolvedWeights("checkpoint", {}, state, weights_file_id(path), path)
        backbone = backbone or cls.default_backbone
        mapped, unused = map_public_state_dict(state, cls(build_backbone(backbone, "empty")))
        log_unused(str(path), unused)
        return released_weights(path, {"model": cls.name, "backbone": backbone}, mapped)

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """Head at ``base_lr``; a trainable backbone at ``base_lr · backbone_lr_ratio``."""
        head = [p for n, p in self.named_parameters() if not n.startswith("backbone.") and p.requires_grad]
        groups = [{"params": head, "lr": base_lr, "name": "head"}]
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        if backbone:
            groups.append({"params": backbone, "lr": base_lr * self.backbone_lr_ratio, "name": "backbone"})
        return groups

    # ------------------------------------------------------------------ pieces

    def encode(self, feats: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Backbone features → enhanced maps ``(B, 21, h_l, w_l)`` per level, finest first."""
        return self.encoder(feats)

    def encode_images(self, img_src: torch.Tensor, img_trg: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        layers = self.required_layers
        return self.encode(self.backbone(img_src, layers)), self.encode(self.backbone(img_trg, layers))

    def volumes(self, maps_a: list[torch.Tensor], maps_b: list[torch.Tensor], stop_level: int = 0):
        """Per-level volumes ``S_l`` for levels ≥ ``stop_level`` (see :func:`coarse_to_fine_volumes`)."""
        return coarse_to_fine_volumes(maps_a, maps_b, self.upsample, stop_level)

    def level_rows(
        self,
        maps_a: list[torch.Tensor],
        maps_b: list[torch.Tensor],
        coarse_volumes: list[torch.Tensor | None],
        level: int,
        direction: str,
        points: torch.Tensor,
    ) -> torch.Tensor:
        """Rows of ``S_l`` (``"src_to_trg"``) or of its transpose at points ``(B, N, 2)`` in cell units.

        ``coarse_volumes[level + 1]`` must hold the coarser volume (or the
        level is the coarsest). → ``(B, N, h, w)`` over the other image's grid.
        """
        coarse = coarse_volumes[level + 1] if level + 1 < len(maps_a) else None
        if direction == "src_to_trg":
            return correlation_rows(maps_a[level], maps_b[level], coarse, points, self.upsample)
        coarse_t = transpose_corr(coarse) if coarse is not None else None
        return correlation_rows(maps_b[level], maps_a[level], coarse_t, points, self.upsample)

    def _match_rows(self, corr: torch.Tensor) -> torch.Tensor:
        if self.matching == "argmax":
            return argmax_matches(corr)
        if self.matching == "soft-argmax":
            return soft_argmax_matches(corr)
        return kernel_soft_argmax_matches(corr)

    def head(self, feats_src: dict[str, torch.Tensor], feats_trg: dict[str, torch.Tensor]) -> Matches:
        return self.match_maps(self.encode(feats_src), self.encode(feats_trg))

    def match_maps(self, maps_a: list[torch.Tensor], maps_b: list[torch.Tensor]) -> Matches:
        """Matches in both directions at ``output_level`` from the enhanced maps."""
        level = self.output_level
        fa, fb = maps_a[level], maps_b[level]
        b, _, ha, wa = fa.shape
        hb, wb = fb.shape[-2:]
        if b * ha * wa * hb * wb <= self.max_volume:
            return matches_from_scores(self.volumes(maps_a, maps_b, stop_level=level)[level], self._match_rows, match_confidence)
        coarse = self.volumes(maps_a, maps_b, stop_level=level + 1)[level + 1] if level + 1 < len(maps_a) else None
        coarse_t = transpose_corr(coarse) if coarse is not None else None
        s2t, conf_a = chunked_matches(fa, fb, coarse, self._match_rows, self.upsample, max(1, CHUNK_SCORES // (hb * wb)))
        t2s, conf_b = chunked_matches(fb, fa, coarse_t, self._match_rows, self.upsample, max(1, CHUNK_SCORES // (ha * wa)))
        return Matches(src_to_trg=s2t, trg_to_src=t2s, confidence_src=conf_a, confidence_trg=conf_b)

    # ------------------------------------------------------------------ test-time transfer

    def _transfer_volume(self, m: Matches, direction: str) -> torch.Tensor | None:
        """The one pair's output-level volume read by the public transfer, or None (soft matching, no volume)."""
        if self.matching != "argmax" or m.corr is None or m.corr.shape[0] != 1:
            return None
        return m.corr[0] if direction == "src->trg" else transpose_corr(m.corr)[0]

    def transfer_keypoints(
        self, m: Matches, points: torch.Tensor, direction: str, src_size: tuple[int, int], trg_size: tuple[int, int]
    ) -> torch.Tensor | None:
        """The public code's keypoint transfer (:func:`transfer_points`) on the output level's volume.

        None (the caller then samples the flow) with a soft ``matching`` or when
        the volume was too large to build (chunked matching).
        """
        corr = self._transfer_volume(m, direction)
        if corr is None:
            return None
        sizes = (src_size, trg_size) if direction == "src->trg" else (trg_size, src_size)
        return transfer_points(corr, points, *sizes)

    def pixel_flows(
        self, m: Matches, src_size: tuple[int, int], trg_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The public transfer at every pixel of each image (``matching="argmax"``); else the default flows."""
        st, ts = self._transfer_volume(m, "src->trg"), self._transfer_volume(m, "trg->src")
        if st is None or ts is None:
            return super().pixel_flows(m, src_size, trg_size)
        return transfer_flow(st, src_size, trg_size).unsqueeze(0), transfer_flow(ts, trg_size, src_size).unsqueeze(0)

    # ------------------------------------------------------------------ training

    def teacher_network(self, device: torch.device) -> torch.nn.Module:
        """The frozen NC-Net teacher (``teacher="ncnet"``), built on first use on ``device``.

        Kept outside the module tree (``self.__dict__``): it is neither trained
        nor saved, and moving or loading the student leaves it alone.
        """
        net = self.__dict__.get("_teacher_network")
        if net is None:
            from .ncnet import build_ncnet

            net = build_ncnet(backbone=self.backbone.name, weights=DEFAULT_SPEC).eval().requires_grad_(False)
            self.__dict__["_teacher_network"] = net
        return net.to(device)

    def pseudo_keypoints(
        self,
        src_image: torch.Tensor,
        trg_image: torch.Tensor,
        feats_src: dict[str, torch.Tensor],
        feats_trg: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's keypoints ``(B, pseudo_points, 2)`` pixels (NaN-padded) for images ``(B, 3, H, W)``.

        The ``nn`` teacher reads the student's backbone features ``feats_*``
        (its :data:`DEFAULT_LAYERS` among them); the ``ncnet`` teacher runs on
        the images.
        """
        src_size, trg_size = tuple(src_image.shape[-2:]), tuple(trg_image.shape[-2:])
        with torch.no_grad():
            if self.teacher == "ncnet":
                net = self.teacher_network(src_image.device)
                corr = net.correlation(net.features(src_image), net.features(trg_image))
            else:
                if not self.teacher_layers:
                    raise UsageError(f"pseudo supervision has no teacher layers for backbone {self.backbone.name}")
                corr = teacher_scores(
                    [feats_src[layer] for layer in self.teacher_layers],
                    [feats_trg[layer] for layer in self.teacher_layers],
                )
            return mutual_nn_keypoints(corr, src_size, trg_size, self.pseudo_points)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The multi-scale keypoint BCE of :mod:`semcorr.losses.mmnet`.

        batch: ``src_image``, ``trg_image`` ``(B, 3, H, W)`` and, with keypoint
        supervision, ``src_kps`` / ``trg_kps`` ``(B, N, 2)`` pixels; with
        pseudo supervision the keypoints come from :meth:`pseudo_keypoints`.
        """
        src, trg = batch["src_image"], batch["trg_image"]
        src_size, trg_size = tuple(src.shape[-2:]), tuple(trg.shape[-2:])
        pseudo = self.supervision == "pseudo"
        missing = [] if pseudo else [key for key in ("src_kps", "trg_kps") if key not in batch]
        if missing:
            raise UsageError(f"a keypoint training batch needs '{missing[0]}'")
        layers = self.required_layers
        if pseudo and self.teacher == "nn":
            layers = layers + [layer for layer in self.teacher_layers if layer not in layers]
        feats_a, feats_b = self.backbone(src, layers), self.backbone(trg, layers)
        if pseudo:
            src_kps, trg_kps = self.pseudo_keypoints(src, trg, feats_a, feats_b)
        else:
            src_kps, trg_kps = batch["src_kps"], batch["trg_kps"]
        maps_a, maps_b = self.encode(feats_a), self.encode(feats_b)
        with torch.no_grad():  # the coarser volumes enter every level detached
            coarse = self.volumes(maps_a, maps_b, stop_level=1) if len(maps_a) > 1 else [None]
        grids = [(tuple(a.shape[-2:]), tuple(b.shape[-2:])) for a, b in zip(maps_a, maps_b)]
        sample = functools.partial(self.level_rows, maps_a, maps_b, coarse)
        return multiscale_keypoint_loss(sample, grids, src_kps, trg_kps, src_size, trg_size)


# ============================================================================ the public keypoint transfer


def _public_taps(v: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cell index, next index and weight of the next one, as the public ``BilinearInterpolate`` reads them.

    v ``(N,)`` float64 cell coordinates (clamped to ``[0, n)``): ``i0 = ⌊v⌋``, weight
    ``v − i0``; a next cell past the grid is dropped (weight 0, index ``i0``).
    """
    v = v.clamp(min=0.0)
    i0 = torch.trunc(v)
    frac = v - i0
    i0 = i0.long().clamp(max=n - 1)
    has_next = (i0 + 1 <= n - 1) & (v < n)
    return i0, torch.where(has_next, i0 + 1, i0), torch.where(has_next, frac, torch.zeros_like(frac))


def _candidate_mask(rows: torch.Tensor) -> torch.Tensor:
    """Target cells that can be the argmax of a convex combination of 4 score rows.

    rows ``(Q, 4, M)`` → ``(Q, M)`` bool. A combination's best score is at least
    ``max_k min_i rows[i, k]``, and cell k scores at most ``max_i rows[i, k]``; a
    cell below that bound (less a rounding margin) never wins.
    """
    upper, lower = rows.amax(1), rows.amin(1)
    bound = lower.amax(1, keepdim=True)
    return upper >= bound - 1e-6 * bound.abs() - 1e-30


def _first_true(mask: torch.Tensor, k: int) -> torch.Tensor:
    """The first ``k`` True columns of each row of ``mask`` ``(Q, M)`` (ascending), padded with the row's last one."""
    counts = mask.sum(1)
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :k]
    last = order.gather(1, (counts - 1).clamp(min=0).unsqueeze(1))
    return torch.where(torch.arange(k, device=mask.device) < counts.unsqueeze(1), order, last)


def transfer_points(
    corr: torch.Tensor,
    points: torch.Tensor,
    src_size: tuple[int, int],
    trg_size: tuple[int, int],
    chunk_scores: int = 1 << 22,
) -> torch.Tensor:
    """MMNet's test-time keypoint transfer (the public ``utils/geometry.predict_kps``).

    For a point ``(x, y)`` of the source image of ``src_size = (H, W)``: cell
    coordinates ``(x·wA/W, y·hA/H)`` (no half-pixel shift); its score row
    interpolated bilinearly over the 4 surrounding cells in the public order
    (``(1−fx)·((1−fy)·s₀₀ + fy·s₁₀) + fx·((1−fy)·s₀₁ + fy·s₁₁)``, integer part
    truncated, a neighbour past the last row/column dropped); the argmax target
    cell ``(i, j)`` (first of equal scores); the point ``(j·W'/wB, i·H'/hB)`` of
    the target image of ``trg_size = (H', W')`` — the cell's corner, not its centre.
    Only the cells that can win for a cell quadruple are scored
    (:func:`_candidate_mask`), so a whole image's pixels stay cheap.

    corr ``(hA, wA, hB, wB)``, points ``(N, 2)`` pixel ``(x, y)`` → ``(N, 2)`` float64
    pixels; NaN points give NaN; points outside the image are clamped to the grid.
    """
    ha, wa, hb, wb = corr.shape
    flat = corr.reshape(ha * wa, hb * wb)
    pts = points.to(device=corr.device, dtype=torch.float64).reshape(-1, 2)
    finite = torch.isfinite(pts).all(dim=1)
    p = torch.where(finite[:, None], pts, torch.zeros_like(pts))
    if p.shape[0] == 0:
        return p.clone()
    x0, x1, fx = _public_taps(p[:, 0] * (wa / float(src_size[1])), wa)
    y0, y1, fy = _public_taps(p[:, 1] * (ha / float(src_size[0])), ha)
    corner_of = [y0 * wa + x0, y1 * wa + x0, y0 * wa + x1, y1 * wa + x1]  # s00, s10, s01, s11 of each point
    quads, which = torch.unique(corner_of[0], return_inverse=True)  # (y1, x1) follow from (y0, x0)
    qy, qx = quads // wa, quads % wa
    qy1, qx1 = (qy + 1).clamp(max=ha - 1), (qx + 1).clamp(max=wa - 1)
    corners = torch.stack([qy * wa + qx, qy1 * wa + qx, qy * wa + qx1, qy1 * wa + qx1], 1)
    q_step = max(1, chunk_scores // (4 * hb * wb))
    keep = torch.cat([_candidate_mask(flat[corners[i : i + q_step]]) for i in range(0, quads.numel(), q_step)])
    counts = keep.sum(1)
    by_count = torch.argsort(counts)  # quadruples with few candidates together: little padding
    rank = torch.empty_like(by_count)
    rank[by_count] = torch.arange(by_count.numel(), device=corr.device)
    point_rank = rank[which]
    point_order = torch.argsort(point_rank, stable=True)
    first = torch.searchsorted(point_rank[point_order], torch.arange(0, by_count.numel() + 1, device=corr.device))
    best = torch.empty(p.shape[0], dtype=torch.long, device=corr.device)
    group = 64
    for g in range(0, by_count.numel(), group):
        members = by_count[g : g + group]
        cells = _first_true(keep[members], int(counts[members].max()))  # (G, K)
        idx_all = point_order[first[g] : first[min(g + group, by_count.numel())]]
        step = max(1, chunk_scores // (4 * cells.shape[1]))
        for ps in range(0, idx_all.numel(), step):
            idx = idx_all[ps : ps + step]
            c = cells[point_rank[idx] - g]  # (n, K) the candidates of each point's quadruple
            rows = [flat[corner[idx].unsqueeze(1), c] for corner in corner_of]
            ay, by = (1 - fy[idx]).to(corr.dtype)[:, None], fy[idx].to(corr.dtype)[:, None]
            ax, bx = (1 - fx[idx]).to(corr.dtype)[:, None], fx[idx].to(corr.dtype)[:, None]
            res1 = ay * rows[0] + by * rows[1]
            res2 = ay * rows[2] + by * rows[3]
            best[idx] = c.gather(1, (ax * res1 + bx * res2).argmax(dim=1, keepdim=True)).squeeze(1)
    out = torch.stack(
        [
            (best % wb).to(torch.float64) * (trg_size[1] / wb),
            torch.div(best, wb, rounding_mode="floor").to(torch.float64) * (trg_size[0] / hb),
        ],
        1,
    )
    out[~finite] = float("nan")
    return out


def transfer_flow(corr: torch.Tensor, src_size: tuple[int, int], trg_size: tuple[int, int]) -> torch.Tensor:
    """:func:`transfer_points` at every pixel of the source image: ``(hA, wA, hB, wB)`` → flow ``(H, W, 2)`` float32."""
    h, w = src_size
    grid = pixel_grid(h, w, corr.device, torch.float64).reshape(-1, 2)
    return transfer_points(corr, grid, src_size, trg_size).view(h, w, 2).float()


# ============================================================================ the authors' checkpoint


_STEM_NAMES = {"0": "conv1", "1": "bn1"}  # our ResNet stem Sequential(conv1, bn1, relu, maxpool)

#: Weights of the released file that the public forward pass never calls: the ResNet's classifier,
#: the per-level ``conv{s}_kernel``, the level-0 branch, the volume and feature upsamplers
#: ``upsample_*`` / ``feature_upsample_*``, and (dilated backbones) the ``feat_upsample_{s}``
#: between stages that share a stride.
PUBLIC_UNUSED = re.compile(
    r"^(backbone\.fc\.|conv\d+_kernel\.|msblock0\.|conv0_(down|kernel)\.|upsample_\d+\.|feature_upsample_\d+\.|feat_upsample_\d+\.)"
)


def own_to_public_key(key: str, backbone: FeatureBackbone) -> str:
    """Name of one of our weights in the public MMNet code's ``state_dict`` (``models/Model.py``).

    1-based stage/block numbers: ``backbone.<torchvision / gluoncvth name>``,
    ``msblock{s}_{i}.conv|conv1|conv2|conv3``, ``conv{s}_{i}_down``,
    ``wa_{s}.conv_theta|conv_phi|conv_g|conv_back`` (our attention's
    query/key/value/out), ``conv{s}_scale`` (fusion at level s) and
    ``feat_upsample_{s}`` (level s → s−1).
    """
    m = re.match(r"^backbone\.stages\.(\d+)\.(.*)$", key)
    if m:
        stage, rest = backbone.stage_names[int(m.group(1))], m.group(2)
        if stage == "stem":
            idx, param = rest.split(".", 1)
            return f"backbone.{_STEM_NAMES[idx]}.{param}"
        return f"backbone.{stage}.{rest}"
    m = re.match(r"^encoder\.enhance\.(\d+)\.blocks\.(\d+)\.(conv|dilated\.\d|down)\.(weight|bias)$", key)
    if m:
        s, i, part, param = int(m.group(1)) + 1, int(m.group(2)) + 1, m.group(3), m.group(4)
        if part == "down":
            return f"conv{s}_{i}_down.{param}"
        sub = "conv" if part == "conv" else f"conv{int(part[-1]) + 1}"
        return f"msblock{s}_{i}.{sub}.{param}"
    m = re.match(r"^encoder\.attention\.(\d+)\.(query|key|value|out)\.(weight|bias)$", key)
    if m:
        conv = {"query": "theta", "key": "phi", "value": "g", "out": "back"}[m.group(2)]
        return f"wa_{int(m.group(1)) + 1}.conv_{conv}.{m.group(3)}"
    m = re.match(r"^encoder\.fusion\.upsample\.(\d+)\.weight$", key)
    if m:
        return f"feat_upsample_{int(m.group(1)) + 2}.weight"
    m = re.match(r"^encoder\.fusion\.fuse\.(\d+)\.(weight|bias)$", key)
    if m:
        return f"conv{int(m.group(1)) + 1}_scale.{m.group(2)}"
    raise KeyError(f"no public name for '{key}'")


def map_public_state_dict(state: dict[str, torch.Tensor], model: MMNet) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a public MMNet ``state_dict`` to ours.

    Returns ``(mapped, unused)``: ``unused`` lists the file's keys the public
    forward never calls (:data:`PUBLIC_UNUSED`). Raises :class:`WeightsError`
    naming the first weight the file lacks, the first key it holds that the
    public model does not have, or the first weight whose shape differs.
    """
    own = model.state_dict()
    table = {own_to_public_key(k, model.backbone): k for k in own}
    missing = [k for k in own if own_to_public_key(k, model.backbone) not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise WeightsError(
            f"the MMNet checkpoint lacks {len(missing)} of the model's weights, e.g. "
            f"'{own_to_public_key(missing[0], model.backbone)}' (for '{missing[0]}'); "
            f"is it for backbone {model.backbone.name}?"
        )
    unused = sorted(k for k in state if k not in table)
    unknown = [k for k in unused if not PUBLIC_UNUSED.match(k)]
    if unknown:
        raise WeightsError(
            f"the MMNet checkpoint holds {len(unknown)} weights the public model does not have, e.g. '{unknown[0]}'; "
            f"is it an MMNet checkpoint for backbone {model.backbone.name}?"
        )
    mapped = {table[k]: v for k, v in state.items() if k in table}
    for k, v in mapped.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise WeightsError(
                f"MMNet checkpoint weight '{own_to_public_key(k, model.backbone)}' has shape {tuple(v.shape)}, "
                f"the model expects {tuple(own[k].shape)}"
            )
    for k in own:
        if k.endswith("num_batches_tracked") and k not in mapped:
            mapped[k] = torch.zeros_like(own[k])
    return mapped, unused


def _unused_summary(unused: list[str]) -> str:
    """``backbone.fc, conv1_kernel, msblock0, …``: the modules of the unused keys, in file order of first use."""
    modules: list[str] = []
    for k in unused:
        module = k.rsplit(".", 1)[0] if k.startswith("backbone.") else k.split(".", 1)[0]
        if module not in modules:
            modules.append(module)
    return ", ".join(modules)


def log_unused(source: str, unused: list[str]) -> None:
    """Log, in one line, the released file's weights that the public forward never calls."""
    if unused:
        log.warning(
            "%s: ignored %d weights of modules the MMNet forward never calls (%s)",
            source,
            len(unused),
            _unused_summary(unused),
        )


def _is_own_state(state: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith("encoder.") for k in state)


def build_mmnet(
    backbone: str = "mobilenet_v2",
    backbone_weights: str = "default",
    weights: str | Path | None = None,
    **options: Any,
) -> MMNet:
    """Build MMNet; ``weights``: any spec of :func:`semcorr.models.pretrained.resolve`.

    ``options``: :class:`MMNet`'s (``upsample``, ``output_level``, ``matching``,
    ``train_backbone``, ``max_volume``, ``supervision``, ``pseudo_points``,
    ``teacher``). When ``weights`` carries a (fine-tuned) backbone, the
    ImageNet backbone weights are not loaded first (they would be overwritten).
    """
    MMNet.check_options(options)
    resolved = resolve(weights, MMNet, backbone)
    carries_backbone = resolved.carries_backbone
    init = "empty" if carries_backbone else backbone_weights  # the file overwrites every backbone weight
    model = MMNet(build_backbone(backbone, init), backbone_weights=backbone_weights, **options)
    load_resolved(model, resolved)
    if carries_backbone:
        if resolved.kind != "released":  # the released adapter has checked every weight already
            given = set(resolved.state or {})
            lacking = [k for k in model.state_dict() if k.startswith("backbone.") and not k.endswith("num_batches_tracked")]
            lacking = [k for k in lacking if k not in given]
            if lacking:
                raise WeightsError(f"'{resolved.path}' holds only part of the backbone (no '{lacking[0]}')")
        model.backbone.weights_id = model.weights_id
    model.eval()
    return model
