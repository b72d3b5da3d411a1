#!/usr/bin/env bash
# The headline pipe on two PF-WILLOW cars: extract → correlate → flow → warp, offline,
# with the default MobileNetV2 backbone. Writes demo-out/{warped,matches,overlay}.png.
set -euo pipefail
DATA="${SEMCORR_SHARED_DATA:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}"
A="$DATA/pf-willow-dev/PF-dataset/car(G)/Cars_006a.png"
B="$DATA/pf-willow-dev/PF-dataset/car(G)/Cars_007a.png"
OUT="${1:-demo-out}"
mkdir -p "$OUT"

semcorr extract "$A" "$B" | semcorr correlate | semcorr flow --method kernel-soft-argmax -o "$OUT/flow.h5"
semcorr warp "$OUT/flow.h5" --image "$A" -o "$OUT/warped.png"
semcorr warp "$OUT/flow.h5" --image "$A" --overlay -o "$OUT/overlay.png"
semcorr warp "$OUT/flow.h5" --image "$A" --matches -o "$OUT/matches.png"
semcorr inspect "$OUT/flow.h5"
echo "demo: wrote $OUT/warped.png, $OUT/overlay.png and $OUT/matches.png"
