#!/usr/bin/env bash
# A batch of 20 PF-WILLOW pairs streamed through extract | correlate | flow with bounded
# memory (each stage holds one pair at a time), then the flows scored with evaluate --flows.
set -euo pipefail
DATA="${SEMCORR_SHARED_DATA:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}"
OUT="${1:-stream-out}"
mkdir -p "$OUT"
awk -F, 'NR == 1 { print "source_image,target_image" } NR > 1 && NR <= 21 { print $1 "," $2 }' \
  "$DATA/pf-willow-dev/test_pairs_pf.csv" > "$OUT/pairs.csv"
semcorr extract --pairs "$OUT/pairs.csv" --root "$DATA/pf-willow-dev" --size 320 \
  | semcorr correlate --mutual-matching \
  | semcorr flow --method argmax -o "$OUT/flows.h5"
semcorr inspect "$OUT/flows.h5" --json | python -c "import json,sys; print(json.load(sys.stdin)['count'], 'pairs in flows.h5')"
semcorr evaluate --dataset pf-willow --root "$DATA/pf-willow-dev" --flows "$OUT/flows.h5" --protocol pf-willow-bbox --limit 20
