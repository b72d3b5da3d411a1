"""How the training-free ``nn`` matcher's settings were chosen — on training data only.

    python benchmarks/select_nn.py [--pairs 50]

Builds synthetic pairs from Caltech-101 *training* images (one image per class,
warped by a random affine map θ = I + N(0, 0.15), as the training generator does),
so the true match of every point is known, and prints PCK of point transfer for
each candidate setting (layers, working size, feature centring, soft mutual
filtering). PF-WILLOW and the other benchmarks are test sets: they are never used
to choose settings. Figures measured here are in the README.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from semcorr.images import float_to_image, image_to_float, load_image
from semcorr.pipeline import FeatureExtractor, NearestNeighbourPredictor
from semcorr.warp import points_through_flow

REPO = Path(__file__).resolve().parents[1]
CALTECH = Path(os.environ.get("SEMCORR_SHARED_DATA", REPO.parent / "shared" / "data")) / "caltech-101-subset" / "101_ObjectCategories"

CANDIDATES = [
    # (layers, size, center, mutual_matching)
    ("features.6,features.13,features.17", 400, False, False),
    ("features.6,features.10,features.13,features.16", 400, False, False),
    ("features.6,features.10,features.13,features.16", 400, True, False),
    ("features.6,features.10,features.13,features.16", 400, True, True),
    ("features.6,features.10,features.13,features.16", 320, True, True),
    ("features.6,features.10,features.13,features.16", 288, True, True),
    ("features.6,features.10,features.13,features.16", 256, True, True),
]


def synthetic_pairs(n: int, seed: int = 0, size=(200, 240)):
    """(src PIL, trg PIL, src points (K, 2), true trg points (K, 2)) for n classes."""
    h, w = size
    rng = np.random.default_rng(seed)
    classes = sorted(p for p in CALTECH.iterdir() if p.is_dir())[::2][:n]
    grid_q = np.stack(np.meshgrid(np.linspace(30, w - 30, 5), np.linspace(30, h - 30, 4)), -1).reshape(-1, 2)
    out = []
    for c in classes:
        img = load_image(sorted(c.glob("*.jpg"))[-1]).resize((w, h))
        theta = np.eye(3)[:2] + rng.normal(0, 0.15, (2, 3))
        grid = F.affine_grid(torch.tensor(theta, dtype=torch.float32)[None], (1, 3, h, w), align_corners=True)
        trg = float_to_image(F.grid_sample(image_to_float(img), grid, align_corners=True))
        qn = np.stack([grid_q[:, 0] / (w - 1) * 2 - 1, grid_q[:, 1] / (h - 1) * 2 - 1, np.ones(len(grid_q))], 1)
        pn = qn @ theta.T  # target pixel q shows source point p = θ q
        p = np.stack([(pn[:, 0] + 1) / 2 * (w - 1), (pn[:, 1] + 1) / 2 * (h - 1)], 1)
        ok = (p[:, 0] >= 0) & (p[:, 0] <= w - 1) & (p[:, 1] >= 0) & (p[:, 1] <= h - 1)
        out.append((img, trg, p[ok], grid_q[ok]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=50)
    args = ap.parse_args()
    pairs = synthetic_pairs(args.pairs)
    alphas = (0.03, 0.05, 0.1)
    print(f"{'layers':<48} {'size':>4} {'centre':>6} {'mutual':>6} | " + " | ".join(f"PCK@{a:<4}" for a in alphas))
    for layers, size, center, mutual in CANDIDATES:
        ext = FeatureExtractor.create("mobilenet_v2", "default", layers.split(","), size)
        pred = NearestNeighbourPredictor(ext, method="argmax", center=center, mutual_matching=mutual)
        hits = {a: [] for a in alphas}
        for src, trg, p, q in pairs:
            flow, _ = pred.predict(src, trg)
            moved = points_through_flow(torch.from_numpy(p), torch.from_numpy(flow)).numpy()
            d = np.linalg.norm(moved - q, axis=1)
            for a in alphas:
                hits[a].append(np.mean(d <= a * max(src.size)))
        print(f"{layers:<48} {size:>4} {str(center):>6} {str(mutual):>6} | " + " | ".join(f"{100 * np.mean(hits[a]):8.1f}" for a in alphas))


if __name__ == "__main__":
    main()
