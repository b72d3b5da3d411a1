"""Training data sources shared by the models.

* :class:`SameClassPairs` — weak supervision: two images of one class;
* :class:`SyntheticPairs` — two random affine warps of one image with masks,
  exact dense correspondence and sampled keypoints;
* :class:`AnnotatedPairs` — keypoint benchmarks (PF-PASCAL, SPair-71k);
* :func:`open_training_source` — the one a model's ``train_data`` needs, from
  a data SPEC (:mod:`semcorr.training_data.spec`);
* :class:`StepOrder` / :class:`RankBatchSampler` — the data order, a pure
  function of ``(seed, epoch, step)``, sharded over processes.

Items are keyed ``(epoch, index)``: ``dataset[(epoch, index)]`` depends on
nothing else, so workers, restarts and processes all see the same data.
"""

from .annotated import AnnotatedPairs
from .folder import ClassTree, scan_class_tree
from .masks import MaskRef, segmentation_foreground
from .order import EvalBatchSampler, RankBatchSampler, StepOrder, collate_pairs, epoch_permutation, seeded_subset
from .pairs import SameClassPairs
from .sources import TRAIN_DATA_KINDS, open_training_source
from .spec import DataSpec, parse_data_spec
from .synthetic import SyntheticConfig, SyntheticPairs, affine_correspondence, make_synthetic_pair, warp_affine

__all__ = [
    "AnnotatedPairs",
    "ClassTree",
    "DataSpec",
    "EvalBatchSampler",
    "MaskRef",
    "RankBatchSampler",
    "SameClassPairs",
    "StepOrder",
    "SyntheticConfig",
    "SyntheticPairs",
    "TRAIN_DATA_KINDS",
    "affine_correspondence",
    "collate_pairs",
    "epoch_permutation",
    "make_synthetic_pair",
    "open_training_source",
    "parse_data_spec",
    "scan_class_tree",
    "seeded_subset",
    "segmentation_foreground",
    "warp_affine",
]
