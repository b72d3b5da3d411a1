"""Time per pair and peak memory of the NC-Net and DCCNet heads, fast Conv4d vs the loop.

    python benchmarks/bench_dccnet_head.py [--size 400] [--repeats 3] [--device cpu|cuda]

Each row runs in a fresh process (so its peak memory is its own): the backbone
features of one pair are computed once, then the head (correlation → consensus
→ matches; DCCNet: local and context branches plus dynamic fusion) is timed with
semcorr's Conv4d ("auto") and with the public code's loop of conv3d calls
("reference"). Peak memory is the process's peak resident set on CPU, or
``torch.cuda.max_memory_allocated`` on CUDA. Heads are freshly initialised (speed
does not depend on the weights); ResNet-101 uses random weights.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def run_one(model: str, backbone: str, size: int, impl: str, repeats: int, device: str) -> dict:
    import torch

    import core.conv4d as c4

    if impl == "reference":
        c4.conv4d = lambda x, w, b=None, strategy="auto": c4.conv4d_reference(x, w, b)
    from core.models import build_model

    net = build_model(model, backbone=backbone, backbone_weights="random" if backbone != "mobilenet_v2" else "default").to(device).eval()
    x = torch.randn(2, 3, size, size, device=device)
    with torch.no_grad():
        feats = net.backbone(x, net.required_layers)
        fa = {k: v[:1] for k, v in feats.items()}
        fb = {k: v[1:] for k, v in feats.items()}
        net.head(fa, fb)  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            net.head(fa, fb)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    grid = tuple(next(iter(fa.values())).shape[-2:])
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"ms": 1000 * sorted(times)[len(times) // 2], "peak_mib": peak, "grid": grid}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backbones", default="mobilenet_v2,resnet101")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        model, backbone, impl = args.one.split(":")
        print(json.dumps(run_one(model, backbone, args.size, impl, args.repeats, args.device)))
        return
    import torch

    print(f"head time per pair, input {args.size}x{args.size}, batch 1, device {args.device}, "
          f"{torch.get_num_threads()} CPU threads, median of {args.repeats}")
    print(f"{'model':<7} {'backbone':<13} {'grid':>6} | {'reference ms':>12} {'MiB':>6} | {'semcorr ms':>10} {'MiB':>6} | {'speed-up':>8}")
    for backbone in args.backbones.split(","):
        for model in ("ncnet", "dccnet"):
            res = {}
            for impl in ("reference", "auto"):
                out = subprocess.run(
                    [sys.executable, __file__, "--one", f"{model}:{backbone}:{impl}", "--size", str(args.size),
                     "--repeats", str(args.repeats), "--device", args.device],
                    capture_output=True, text=True, check=True,
                )
                res[impl] = json.loads(out.stdout.strip().splitlines()[-1])
            g = "x".join(str(v) for v in res["auto"]["grid"])
            print(f"{model:<7} {backbone:<13} {g:>6} | {res['reference']['ms']:>12.0f} {res['reference']['peak_mib']:>6.0f} | "
                  f"{res['auto']['ms']:>10.0f} {res['auto']['peak_mib']:>6.0f} | {res['reference']['ms'] / res['auto']['ms']:>7.2f}x")


if __name__ == "__main__":
    main()
