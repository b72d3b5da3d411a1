#!/usr/bin/env bash
# Recipes of the weights shipped in core/weights/ (issue 8), on the offline MobileNetV2 backbone,
# trained on ../shared/data/caltech-101-subset (never on PF-WILLOW, a test set).
#
#   bash examples/train_default_weights.sh sfnet      # ~35 min on 2 CPU cores
#
# SFNet: synthetic pairs (two random affine warps of one image, colour jitter 0.1, flip 0.5),
# whole-image foreground masks (the subset has no segmentations), paper's optimiser
# (Adam 3e-5, betas 0.9/0.999), 320x320, batch 8, 2100 iterations (~4 epochs), seed 0.
set -euo pipefail
DATA="${SEMCORR_SHARED_DATA:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}"
MODEL="${1:-sfnet}"
RUN="${RUN:-runs/default-$MODEL}"
case "$MODEL" in
  sfnet)
    semcorr train --model sfnet --data "folder:$DATA/caltech-101-subset/101_ObjectCategories" \
      --iterations 2100 --image-size 320 --batch-size 8 --checkpoint-every 100 --seed 0 --out "$RUN" --resume
    ;;
  *)
    echo "no shipped recipe for '$MODEL' yet (only sfnet)" >&2; exit 2 ;;
esac
semcorr evaluate --dataset pf-willow --root "$DATA/pf-willow-dev" --model "$MODEL" \
  --weights "$RUN/last.safetensors" --json "$RUN/pf-willow.json"
