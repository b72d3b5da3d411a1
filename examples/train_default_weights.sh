#!/usr/bin/env bash
# Recipes of the weights shipped in core/weights/ (issue 8), on the offline MobileNetV2 backbone,
# trained on ../shared/data/caltech-101-subset (never on PF-WILLOW, a test set), then scored once
# on the PF-WILLOW development part for the README table (never to pick a checkpoint).
#
#   bash examples/train_default_weights.sh sfnet      # ~35 min on 2 CPU cores
#   bash examples/train_default_weights.sh mmnet      # ~80 min (runs mmnet-synthetic first; uses the shipped NC-Net)
#   bash examples/train_default_weights.sh ncnet      # ~25 min
#   bash examples/train_default_weights.sh dccnet     # ~40 min, after ncnet (starts from its consensus)
#
# Training is deterministic (seeded initialisation, data order and augmentation; deterministic
# CPU kernels), so a re-run on the same versions gives the same weights bit for bit; the
# `weights_sha256` at the end of RUN/log.jsonl says so.
#
# SFNet: synthetic pairs (two random affine warps of one image, colour jitter 0.1, flip 0.5),
#   whole-image foreground masks (the subset has no segmentations), the paper's optimiser
#   (Adam 3e-5), 320x320, batch 8, 2100 iterations (~4 epochs), seed 0.
# MMNet, two stages (the paper trains on annotated keypoints; Caltech-101 has none):
#   mmnet-synthetic: synthetic pairs with keypoints (the same warps), 320x320, batch 5, Adam 1e-4
#   (the paper's SGD 5e-4 diverged after ~85 steps here), frozen backbone, 1800 iterations, seed 0;
#   mmnet: starts from it and trains on same-class pairs with pseudo keypoints (supervision=pseudo,
#   teacher=ncnet: each pair's 32 most confident mutual nearest neighbours of the shipped NC-Net's
#   refined correlation, two cells away from the border), same optimiser, 1500 iterations, seed 0.
#   Synthetic warps alone teach matching of one instance to itself (43.5 at PCK@0.1); the
#   training-free nn matcher as teacher gave a student no better than itself (48.0 against 50.1).
# NC-Net: same-class pairs (weak supervision, negatives = rolled targets), 320x320 (20x20 grid),
#   batch 8, the paper's Adam 5e-4, 400 iterations, seed 0. Head as published for InLoc (3x3x3x3
#   kernels, 16 then 1 channels: CPU-sized); features: the centred hypercolumn of features.6/10/13/16
#   on the stride-16 grid (the nearest-neighbour baseline's features).
# DCCNet: same-class pairs, starts from the NC-Net run's consensus (--init-weights), context
#   encoder and fusion fresh (3x3x3x3 kernels, 16 then 1 channels, 20x20 fusion grid = the training
#   grid), 320x320, batch 8, Adam 5e-4, 150 iterations, seed 0. (~40 min)
set -euo pipefail
DATA="${SEMCORR_SHARED_DATA:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}"
MODEL="${1:-sfnet}"
RUN="${RUN:-runs/default-$MODEL}"
CALTECH="folder:$DATA/caltech-101-subset/101_ObjectCategories"
HYPER="hypercolumn=features.6,features.10,features.13,features.16"
case "$MODEL" in
  sfnet)
    semcorr train --model sfnet --data "$CALTECH" \
      --iterations 2100 --size 320 --batch-size 8 --checkpoint-every 100 --seed 0 -o "$RUN" --resume
    ;;
  mmnet-synthetic)
    semcorr train --model mmnet --data "$CALTECH" \
      --iterations 1800 --size 320 --batch-size 5 --optimizer adam --lr 1e-4 --weight-decay 0 \
      --lr-schedule none --model-opt train_backbone=false --checkpoint-every 50 --seed 0 -o "$RUN" --resume
    ;;
  mmnet)
    SYNTHETIC_RUN="${MMNET_SYNTHETIC_RUN:-runs/default-mmnet-synthetic}"
    if [ ! -f "$SYNTHETIC_RUN/last.safetensors" ]; then
      RUN="$SYNTHETIC_RUN" EVALUATE=0 bash "$0" mmnet-synthetic
    fi
    semcorr train --model mmnet --data "$CALTECH" --init-weights "$SYNTHETIC_RUN/last.safetensors" \
      --iterations 1500 --size 320 --batch-size 5 --optimizer adam --lr 1e-4 --weight-decay 0 \
      --lr-schedule none --model-opt train_backbone=false --model-opt supervision=pseudo --model-opt teacher=ncnet \
      --checkpoint-every 50 --seed 0 -o "$RUN" --resume
    ;;
  ncnet)
    semcorr train --model ncnet --data "$CALTECH" \
      --iterations 400 --size 320 --batch-size 8 \
      --model-opt "$HYPER" --model-opt center=true --model-opt ncons_kernel_sizes=3,3 --model-opt ncons_channels=16,1 \
      --checkpoint-every 50 --seed 0 -o "$RUN" --resume
    ;;
  dccnet)
    NCNET_RUN="${NCNET_RUN:-runs/default-ncnet}"
    if [ ! -f "$NCNET_RUN/last.safetensors" ]; then
      RUN="$NCNET_RUN" bash "$0" ncnet
    fi
    semcorr train --model dccnet --data "$CALTECH" --init-weights "$NCNET_RUN/last.safetensors" \
      --iterations 150 --size 320 --batch-size 8 \
      --model-opt fusion_kernel_sizes=3,3 --model-opt fusion_channels=16,1 --model-opt fusion_grid=20 \
      --checkpoint-every 25 --seed 0 -o "$RUN" --resume
    ;;
  *)
    echo "no shipped recipe for '$MODEL' (sfnet, mmnet, mmnet-synthetic, ncnet, dccnet)" >&2; exit 2 ;;
esac
if [ "${EVALUATE:-1}" = 1 ]; then
  semcorr evaluate --dataset pf-willow --root "$DATA/pf-willow-dev" --model "${MODEL%-synthetic}" \
    --weights "$RUN/last.safetensors" -o "$RUN/pf-willow.json"
fi
