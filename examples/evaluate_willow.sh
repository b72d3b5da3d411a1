#!/usr/bin/env bash
# Training-free nearest-neighbour baseline on the PF-WILLOW development part (450 pairs),
# offline, default MobileNetV2 backbone, under both PF-WILLOW protocols. PF-WILLOW is a
# test set: its numbers are reported, never used to choose settings.
set -euo pipefail
DATA="${SEMCORR_SHARED_DATA:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}"
OUT="${1:-eval-out}"
mkdir -p "$OUT"
for protocol in pf-willow-kps pf-willow-bbox; do
  semcorr evaluate --dataset pf-willow --root "$DATA/pf-willow-dev" --model nn \
    --protocol "$protocol" --results "$OUT/nn-$protocol.jsonl" --resume \
    -o "$OUT/nn-$protocol.json" -o "$OUT/nn-$protocol.csv" -o "$OUT/nn-$protocol.png"
done
