"""The names PCK is reported with: reference-length kinds and the default α values.

Kept free of numpy so that the command line can list them as choices at start-up
without loading the metrics themselves (:mod:`semcorr.metrics` uses and re-exports them).
"""

#: The reported α values of most tables.
DEFAULT_ALPHAS = (0.05, 0.1, 0.15)
#: Reference lengths L of PCK: the image (``img``), the object box (``bbox``), the keypoints'
#: box (``kps``) and 0.6 × that box's diagonal (``kps-diag``, JHMDB).
THRESHOLD_KINDS = ("img", "bbox", "kps", "kps-diag")
