"""Evaluation protocols: every convention of a published table, named and frozen.

A :class:`Protocol` fixes what changes a benchmark figure: the α values, the
reference length ``L`` (``img``, ``bbox``, ``kps``), the transfer direction
and so the image where the error is measured, whether errors are measured in
the original images or after a resize, how keypoint coordinates are read, how
the flow is sampled at a keypoint, and how pairs are averaged. The presets
reproduce the protocols of the papers named in ``papers``; ``docs/protocols.md``
explains each. :func:`customize` derives a variant (e.g. other α values) that
keeps the preset's name with a ``+`` suffix, so results files say what was changed.

Directions: ``src->trg`` transfers the *source* keypoints with
``flow/src_to_trg`` and measures errors in the target image;
``trg->src`` transfers the *target* keypoints with ``flow/trg_to_src`` and
measures in the source image (NC-Net, DCCNet and SFNet's code); ``both``
(dense protocols) scores each flow against its own ground truth.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .errors import UsageError
from .pck_names import DEFAULT_ALPHAS, THRESHOLD_KINDS

TASKS = ("keypoints", "flow", "mask", "propagation", "coseg")
DIRECTIONS = ("src->trg", "trg->src", "both")
SAMPLINGS = ("bilinear", "nearest")
AVERAGES = ("pair", "keypoint", "joint")
PROPAGATIONS = ("first", "chain")
#: How a learned model's input is made: ``model`` (the model's own resize) or ``sfnet-published``
#: (SFNet's test code: resize to size − 32, zero-pad 16 pixels, drop the grid border and rescale).
MODEL_INPUTS = ("model", "sfnet-published")
FLIP_MODES = ("none", "gt")


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol (see the module doc).

    * ``task``: ``keypoints`` (PCK), ``flow`` (dense PCK, TSS), ``mask`` (Caltech-101)
      ``propagation`` (first-frame keypoints carried through a video, JHMDB)
      or ``coseg`` (co-segmentation masks against the ground truth, TSS);
    * ``alphas``: the reported α values; ``headline_alpha``: the one in the paper's table;
    * ``threshold``: ``img``, ``bbox`` or ``kps`` (:mod:`semcorr.metrics`);
    * ``direction``: ``src->trg``, ``trg->src`` or ``both``;
    * ``measure_size``: ``(H, W)`` frame the points of the measured image are
      rescaled to before measuring (NC-Net's 224×224 "SCNet procedure"),
      or None for the original image;
    * ``size``: the working size (square side, or ``(H, W)``) of the papers' models, or None
      for the model's own default; it resizes the images fed to a learned
      model only (the CLI leaves the training-free ``nn`` at its own size);
    * ``coords``: how the dataset's coordinates are read (``one-based`` or ``raw``,
      :mod:`semcorr.datasets.base`);
    * ``sampling``: how the flow is read at a keypoint: ``bilinear``, or
      ``nearest`` (rounded to the nearest pixel, SFNet's code);
    * ``average``: the headline average, ``pair`` (mean of per-pair PCK),
      ``keypoint`` (pooled) or ``joint`` (mean over keypoint indices of each
      index's pooled PCK; propagation only); all are always reported;
    * ``propagation``: ``first`` (every frame matched to the first) or
      ``chain`` (frame to frame), :mod:`semcorr.propagate`; propagation only;
    * ``flip``: ``gt`` runs the model on a mirrored source image for pairs the
      dataset flags as flipped (TSS), ``none`` never;
    * ``model_input``: ``model`` (each model's own resize) or ``sfnet-published``
      (SFNet's test input and grid crop, :func:`semcorr.models.sfnet.sfnet_published_flow`;
      applies to SFNet, other models keep their own);
    * ``dataset_options``: reader options the protocol needs (e.g. the pair list).
    """

    name: str
    dataset: str
    task: str
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    headline_alpha: float = 0.1
    threshold: str = "img"
    direction: str = "src->trg"
    measure_size: tuple[int, int] | None = None
    size: int | tuple[int, int] | None = None
    resize_rule: str = ""
    coords: str = "raw"
    sampling: str = "bilinear"
    average: str = "pair"
    flip: str = "none"
    split: str | None = None
    propagation: str = "first"
    model_input: str = "model"
    dataset_options: tuple[tuple[str, Any], ...] = ()
    papers: tuple[str, ...] = ()
    notes: str = ""
    derived_from: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        checks = (
            ("task", self.task, TASKS),
            ("threshold", self.threshold, THRESHOLD_KINDS),
            ("direction", self.direction, DIRECTIONS),
            ("sampling", self.sampling, SAMPLINGS),
            ("average", self.average, AVERAGES),
            ("flip", self.flip, FLIP_MODES),
            ("coords", self.coords, ("one-based", "raw")),
            ("propagation", self.propagation, PROPAGATIONS),
            ("model_input", self.model_input, MODEL_INPUTS),
        )
        for what, value, allowed in checks:
            if value not in allowed:
                raise UsageError(f"protocol {what} must be one of {', '.join(allowed)}, not '{value}'")
        if not self.alphas or any(not 0 < a < 1 for a in self.alphas):
            raise UsageError(f"protocol alphas must be numbers in (0, 1), got {list(self.alphas)}")
        if self.task == "keypoints" and self.direction == "both":
            raise UsageError("a keypoint protocol transfers in one direction: src->trg or trg->src")
        if self.task == "propagation" and self.direction != "src->trg":
            raise UsageError("a propagation protocol carries points from each frame to the next one (src->trg)")
        if self.average == "joint" and self.task != "propagation":
            raise UsageError("the 'joint' average is defined for propagation protocols only")

    def options(self) -> dict[str, Any]:
        """Reader options this protocol needs: ``coords`` and ``dataset_options``."""
        opts = dict(self.dataset_options)
        if self.task not in ("flow", "coseg"):  # TSS reads no coordinates
            opts["coords"] = self.coords
        return opts

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON values (what results files and reports store)."""
        d = asdict(self)
        d["alphas"] = list(self.alphas)
        d["measure_size"] = list(self.measure_size) if self.measure_size else None
        d["dataset_options"] = dict(self.dataset_options)
        d["papers"] = list(self.papers)
        if self.task != "propagation":
            del d["propagation"]  # results files of the other tasks keep their earlier header
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Protocol:
        d = dict(d)
        d["alphas"] = tuple(d.get("alphas", DEFAULT_ALPHAS))
        d["measure_size"] = tuple(d["measure_size"]) if d.get("measure_size") else None
        if isinstance(d.get("size"), list):
            d["size"] = tuple(d["size"])
        d["dataset_options"] = tuple(sorted((d.get("dataset_options") or {}).items()))
        d["papers"] = tuple(d.get("papers", ()))
        return cls(**d)


NCNET = "Rocco et al., Neighbourhood Consensus Networks (NC-Net), NeurIPS 2018"
DCCNET = "Huang et al., Dynamic Context Correspondence Network (DCCNet), ICCV 2019"
SFNET = "Lee et al., SFNet: Learning Object-aware Semantic Correspondence, CVPR 2019"
SFNET_TPAMI = "Lee et al., Learning Semantic Correspondence Exploiting an Object-level Prior (SFNet), TPAMI 2020"
TIMECYCLE = "Wang et al., Learning Correspondence from the Cycle-consistency of Time (TimeCycle), CVPR 2019"
WEAKALIGN = "Rocco et al., End-to-end weakly-supervised semantic alignment (weakalign), CVPR 2018"
PROPOSAL_FLOW = "Ham et al., Proposal Flow, CVPR 2016 / TPAMI 2018"
SPAIR = "Min et al., SPair-71k: A Large-scale Benchmark for Semantic Correspondence, 2019"
HPF = "Min et al., Hyperpixel Flow, ICCV 2019"
MMNET = "Zhao et al., Multi-scale Matching Networks for Semantic Correspondence (MMNet), ICCV 2021"
TSS_PAPER = "Taniai et al., Joint Recovery of Dense Correspondence and Cosegmentation in Two Images, CVPR 2016"

PRESETS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            name="pf-pascal-ncnet",
            dataset="pf-pascal",
            task="keypoints",
            threshold="img",
            direction="trg->src",
            measure_size=(224, 224),
            size=400,
            resize_rule="model input 400×400; errors measured after rescaling the source image's points to 224×224 and L = 224 (the 'SCNet procedure' of NC-Net's pf_dataset.py)",
            coords="one-based",
            split="test",
            dataset_options=(("pair_list", "ncnet"),),
            papers=(NCNET, DCCNET, WEAKALIGN),
            notes="NC-Net test list (299 pairs); per-pair PCK averaged over pairs; NC-Net/DCCNet report α = 0.1.",
        ),
        Protocol(
            name="pf-pascal-sfnet",
            dataset="pf-pascal",
            task="keypoints",
            threshold="bbox",
            direction="trg->src",
            size=320,
            resize_rule="SFNet's test input (resize to 288×288, zero-pad 16 to 320×320, grid border dropped); errors measured in the original source image, L = max side of the source object box (SFNet's source_L_pck)",
            coords="raw",
            sampling="nearest",
            average="pair",
            split="test",
            model_input="sfnet-published",
            dataset_options=(("pair_list", "sfnet"),),
            papers=(SFNET,),
            notes=(
                "SFNet's eval_pascal.py --eval_type bounding_box on its bbox CSV (same 299 pairs as NC-Net's test "
                "list); target points rounded to pixels, CSV values read as 0-based; each pair's PCK averaged over "
                "pairs (total_correct_points / len(test_dataset))."
            ),
        ),
        Protocol(
            name="pf-pascal-sfnet-img",
            dataset="pf-pascal",
            task="keypoints",
            threshold="img",
            direction="trg->src",
            measure_size=(320, 320),
            size=320,
            resize_rule=(
                "SFNet's test input (288×288 zero-padded to 320×320, grid border dropped); points and errors in the 320×320 frame of the resized images, "
                "L = 320 (SFNet's eval_type image_size)"
            ),
            coords="raw",
            sampling="nearest",
            average="pair",
            split="test",
            model_input="sfnet-published",
            dataset_options=(("pair_list", "sfnet"),),
            papers=(SFNET,),
            notes=(
                "SFNet's eval_pascal.py default (--eval_type image_size): keypoints rescaled to 320×320, "
                "L = max(320, 320), per-pair PCK averaged over pairs. semcorr reads the flow at the target point's "
                "nearest original pixel and rescales the result to 320×320, where SFNet rounds in the 320×320 "
                "frame and reads its 320×320 grid (sub-pixel differences)."
            ),
        ),
        Protocol(
            name="pf-pascal-mmnet",
            dataset="pf-pascal",
            task="keypoints",
            headline_alpha=0.05,
            threshold="img",
            direction="src->trg",
            measure_size=(224, 320),
            size=(224, 320),
            resize_rule="model input 224×320 (H×W, F.interpolate bilinear); errors measured after rescaling the target image's points to 224×320 and L = 320 (MMNet's test.py --resize 224,320, thresh_type img)",
            coords="raw",
            split="test",
            dataset_options=(("pair_list", "ncnet"),),
            papers=(MMNET,),
            notes="source keypoints transferred by MMNet's own rule (bilinear scores, argmax, cell corner; utils/geometry.predict_kps) when the model has it; per-pair PCK averaged over pairs; MMNet's README quotes α = 0.05.",
        ),
        Protocol(
            name="pf-willow-kps",
            dataset="pf-willow",
            task="keypoints",
            threshold="kps",
            direction="trg->src",
            size=400,
            resize_rule="model input 400×400; errors measured in the original source image, L = max side of the box around the source keypoints (the 'pf' procedure of NC-Net's pf_dataset.py)",
            coords="one-based",
            split="test",
            papers=(WEAKALIGN, DCCNET),
            notes="as implemented in the weakalign/NC-Net evaluation code; test_pairs_pf.csv (900 pairs); per-pair PCK averaged over pairs.",
        ),
        Protocol(
            name="pf-willow-bbox",
            dataset="pf-willow",
            task="keypoints",
            threshold="bbox",
            direction="src->trg",
            resize_rule="errors measured in the original target image, L = max side of the target object box, which for PF-WILLOW is the box around its keypoints",
            coords="one-based",
            split="test",
            papers=(PROPOSAL_FLOW, HPF),
            notes="source keypoints transferred to the target; per-pair PCK averaged over pairs.",
        ),
        Protocol(
            name="spair-71k",
            dataset="spair",
            task="keypoints",
            threshold="bbox",
            direction="src->trg",
            resize_rule="errors measured in the original target image, L = max side of the target object box (trg_bndbox)",
            coords="raw",
            split="test",
            dataset_options=(("layout", "large"),),
            papers=(SPAIR, HPF),
            notes="Layout/large test split (12,234 pairs); per-category table and the difficulty breakdown of the benchmark paper's Table 4.",
        ),
        Protocol(
            name="spair-71k-mmnet",
            dataset="spair",
            task="keypoints",
            threshold="bbox",
            direction="src->trg",
            measure_size=(224, 320),
            size=(224, 320),
            resize_rule="model input 224×320 (H×W, F.interpolate bilinear); errors measured after rescaling the target image's points and box to 224×320, L = max side of the rescaled target box (MMNet's test.py --benchmark spair --resize 224,320)",
            coords="raw",
            split="test",
            dataset_options=(("layout", "large"),),
            papers=(MMNET,),
            notes="Layout/large test split; source keypoints transferred by MMNet's own rule when the model has it; per-pair PCK averaged over pairs.",
        ),
        Protocol(
            name="tss",
            dataset="tss",
            task="flow",
            alphas=(0.05,),
            headline_alpha=0.05,
            threshold="img",
            direction="both",
            resize_rule="flows at the original resolution; L = max(H, W) of the image the flow is defined on (the evaluation kit's 5 px on a 100 px longer side)",
            flip="gt",
            split="test",
            papers=(TSS_PAPER, WEAKALIGN),
            notes="PCK counted over the ground-truth foreground of each flow map (flow1 and flow2); per subset, then averaged over FG3DCar, JODS and PASCAL.",
        ),
        Protocol(
            name="tss-coseg",
            dataset="tss",
            task="coseg",
            alphas=(0.1,),
            headline_alpha=0.1,
            threshold="img",
            direction="both",
            resize_rule=(
                "masks and flows at the original resolution; each image's co-segmentation = its predicted mask × "
                "the other image's predicted mask read through the flow, foreground above 0.5"
            ),
            flip="gt",
            split="test",
            papers=(SFNET_TPAMI, TSS_PAPER),
            notes=(
                "IoU of each image's co-segmentation with mask1.png / mask2.png, averaged over the images of a "
                "subset, then over FG3DCar, JODS and PASCAL (α unused). Needs a model that predicts masks "
                "(SFNet with mask_head=true) or records holding mask/src and mask/trg."
            ),
        ),
        Protocol(
            name="caltech-101",
            dataset="caltech-101",
            task="mask",
            alphas=(0.1,),
            threshold="img",
            direction="trg->src",
            resize_rule="masks rasterised at the original image sizes; the source mask is warped into the target with flow/trg_to_src",
            coords="raw",
            split="test",
            papers=(WEAKALIGN,),
            notes="LT-ACC and IoU per pair, averaged over pairs (α unused).",
        ),
        Protocol(
            name="cub-mmnet",
            dataset="cub",
            task="keypoints",
            threshold="bbox",
            direction="src->trg",
            resize_rule="errors measured in the original target image, L = max(w, h) of the target bird's box (bounding_boxes.txt)",
            coords="raw",
            average="pair",
            split="test",
            papers=(MMNET,),
            notes=(
                "CUB-200-2011 test split, parts visible in both images only; per-pair PCK averaged over pairs "
                "(MMNet's Evaluator). MMNet's code names a 'cub' benchmark but ships no reader or pair list: the "
                "list is pairs=FILE, else random_pairs.txt (class_pairs.txt with pairing=class) in the root, the "
                "public CUB readers' file, first 10,000 lines, else semcorr's own (10,000 seeded pairs of test images)."
            ),
        ),
        Protocol(
            name="jhmdb-sfnet",
            dataset="jhmdb",
            task="propagation",
            alphas=(0.1, 0.2),
            headline_alpha=0.1,
            threshold="kps-diag",
            direction="src->trg",
            size=320,
            resize_rule=(
                "model input 320×320; errors in the original frame, L = 0.6·√(w² + h²) of the box around the "
                "frame's ground-truth joints (TimeCycle/UVC eval_pck.py)"
            ),
            coords="one-based",
            average="joint",
            split="test",
            propagation="first",
            dataset_options=(("fold", 1),),
            papers=(SFNET_TPAMI, TIMECYCLE),
            notes=(
                "split 1 test clips; the first frame's 15 joints carried to every later frame (each frame matched "
                "to the first), the first frame not scored; PCK per joint pooled over all frames, averaged over the "
                "15 joints (eval_pck.py's computePCK), which equals the pooled figure when every joint is annotated "
                "in every frame; the identity model is the Identity baseline."
            ),
        ),
        Protocol(
            name="custom",
            dataset="custom",
            task="keypoints",
            threshold="img",
            direction="src->trg",
            resize_rule="errors measured in the original target image, L = max(H, W) of the target image",
            coords="raw",
            notes="for a user CSV; change the threshold, direction and α with customize() or the CLI options.",
        ),
    )
}

#: The preset used when a dataset is evaluated without naming a protocol.
DEFAULT_PROTOCOL = {
    "pf-willow": "pf-willow-kps",
    "pf-pascal": "pf-pascal-ncnet",
    "spair": "spair-71k",
    "tss": "tss",
    "caltech-101": "caltech-101",
    "cub": "cub-mmnet",
    "jhmdb": "jhmdb-sfnet",
    "custom": "custom",
}


def get_protocol(name: str) -> Protocol:
    """The preset called ``name``."""
    if name not in PRESETS:
        raise UsageError(f"unknown protocol '{name}'; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def protocols_for(dataset: str) -> list[Protocol]:
    """The presets defined for ``dataset``."""
    return [p for p in PRESETS.values() if p.dataset == dataset]


def default_protocol(dataset: str) -> Protocol:
    """The preset used for ``dataset`` when none is named."""
    if dataset not in DEFAULT_PROTOCOL:
        raise UsageError(f"no protocol is defined for dataset '{dataset}'")
    return PRESETS[DEFAULT_PROTOCOL[dataset]]


def customize(protocol: Protocol, **changes: Any) -> Protocol:
    """``protocol`` with some fields changed (None values are ignored); named ``<name>+``."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if "alphas" in changes:
        changes["alphas"] = tuple(float(a) for a in changes["alphas"])
    if "measure_size" in changes and changes["measure_size"] is not None:
        changes["measure_size"] = tuple(changes["measure_size"])
    unknown = [k for k in changes if k not in Protocol.__dataclass_fields__]
    if unknown:
        raise UsageError(f"protocols have no field '{unknown[0]}'")
    if all(getattr(protocol, k) == v for k, v in changes.items()):
        return protocol
    name = protocol.name if protocol.name.endswith("+") else protocol.name + "+"
    return replace(protocol, name=name, derived_from=protocol.derived_from or protocol.name, **changes)


__all__ = [
    "Protocol",
    "PRESETS",
    "DEFAULT_PROTOCOL",
    "get_protocol",
    "protocols_for",
    "default_protocol",
    "customize",
    "DIRECTIONS",
    "TASKS",
    "PROPAGATIONS",
]
