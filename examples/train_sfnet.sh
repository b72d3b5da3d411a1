#!/usr/bin/env bash
# SFNet on synthetic affine pairs of Caltech-101 images (whole-image masks: the subset has
# no segmentations), then its flows on a PF-WILLOW pair and its PF-WILLOW score.
# Short by default (ITERS=200); the paper's schedule is `semcorr train --model sfnet` alone.
set -euo pipefail
DATA="${SEMCORR_SHARED_DATA:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}"
RUN="${RUN:-runs/sfnet-caltech}"
ITERS="${ITERS:-200}"
semcorr train --model sfnet --data "folder:$DATA/caltech-101-subset/101_ObjectCategories" \
  --iterations "$ITERS" --size 320 --batch-size 8 --checkpoint-every 50 --seed 0 -o "$RUN" --resume
A="$DATA/pf-willow-dev/PF-dataset/car(G)/Cars_006a.png"
B="$DATA/pf-willow-dev/PF-dataset/car(G)/Cars_007a.png"
semcorr extract "$A" "$B" --model sfnet --size 320 | semcorr flow --model sfnet --weights "$RUN/last.safetensors" \
  | semcorr warp --image "$A" -o "$RUN/warped.png"
semcorr evaluate --dataset pf-willow --root "$DATA/pf-willow-dev" --model sfnet --weights "$RUN/last.safetensors" -o "$RUN/pf-willow.json"
