"""Time and memory of SFNet flow from images: backbone + adaptation/matching head + flow at the original resolution.

Each configuration runs in a fresh subprocess so that its peak memory is its
own. Timings are per pair (batch of 1), median over ``--repeats`` runs after
``--warmup`` runs, under ``torch.no_grad()``; on CUDA with synchronisation.
The feature-extraction share (both images through the frozen backbone) is
timed separately, as the paper reports it (24.9 ms per pair on a Titan RTX,
23.7 ms of it feature extraction, ResNet-101 at 320×320).

Memory: on CPU the process's peak resident set size (``ru_maxrss``) and its
growth during inference over the RSS after building the model; on CUDA
``torch.cuda.max_memory_allocated`` (model included) and its growth over the
model's own allocation.

    python benchmarks/bench_sfnet.py                 # CPU, and CUDA when present
    python benchmarks/bench_sfnet.py --device cpu --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {
    "mobilenet_v2": {"backbone": "mobilenet_v2", "backbone_weights": "default"},
    "resnet101": {"backbone": "resnet101", "backbone_weights": "random"},
}


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def run_one(
    config: str, device: str, size: int, orig: tuple[int, int], warmup: int, repeats: int, threads: int = 0
) -> dict:
    """Measure one configuration in this process; returns a JSON-able dict."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)

    from semcorr.flow import matches_to_flow
    from semcorr.models.sfnet import build_sfnet

    dev = torch.device(device)
    torch.manual_seed(0)
    model = build_sfnet(**CONFIGS[config]).to(dev).eval()
    src = torch.randn(1, 3, size, size, device=dev)
    trg = torch.randn(1, 3, size, size, device=dev)
    layers = model.required_layers

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def flow_pair() -> torch.Tensor:
        m = model.head(model.backbone(src, layers), model.backbone(trg, layers))
        return matches_to_flow(m.src_to_trg, orig, orig), matches_to_flow(m.trg_to_src, orig, orig)

    def features_only() -> None:
        model.backbone(src, layers)
        model.backbone(trg, layers)

    def features_and_adaptation() -> None:
        model.adapt(model.backbone(src, layers))
        model.adapt(model.backbone(trg, layers))

    def timed(fn) -> list[float]:
        for _ in range(warmup):
            fn()
        sync()
        out = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            sync()
            out.append((time.perf_counter() - t0) * 1000)
        return out

    rss_before = _rss_mib()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        model_mem = torch.cuda.memory_allocated(dev) / 2**20
    with torch.no_grad():
        total = timed(flow_pair)
        feats = timed(features_only)
        adapted = timed(features_and_adaptation)
    result = {
        "config": config,
        "device": device if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "size": size,
        "orig": list(orig),
        "threads": torch.get_num_threads(),
        "ms_pair": statistics.median(total),
        "ms_pair_min": min(total),
        "ms_features": statistics.median(feats),
        "ms_adapted": statistics.median(adapted),
        "load_avg": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "head_params_m": sum(p.numel() for n, p in model.named_parameters() if not n.startswith("backbone.")) / 1e6,
    }
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) / 2**20
        result.update(peak_mib=peak, inference_mib=peak - model_mem)
    else:
        peak = _peak_rss_mib()
        result.update(peak_mib=peak, inference_mib=max(peak - rss_before, 0.0))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: CPU, plus CUDA when present")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated: " + ", ".join(CONFIGS))
    parser.add_argument("--size", type=int, default=320, help="network input side (pixels)")
    parser.add_argument("--orig", default="375x500", help="original image HxW the flow is upsampled to")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    orig = tuple(int(v) for v in args.orig.lower().split("x"))
    if len(orig) != 2:
        parser.error("--orig must look like 375x500")

    if args.child:
        (config,) = args.configs.split(",")
        print(json.dumps(run_one(config, args.device, args.size, orig, args.warmup, args.repeats, args.threads)))
        return

    import torch

    devices = {"auto": ["cpu"] + (["cuda"] if torch.cuda.is_available() else []), "cpu": ["cpu"], "cuda": ["cuda"]}[args.device]
    rows = []
    for device in devices:
        for config in args.configs.split(","):
            cmd = [sys.executable, os.path.abspath(__file__), "--child", "--device", device, "--configs", config,
                   "--size", str(args.size), "--orig", args.orig, "--warmup", str(args.warmup),
                   "--repeats", str(args.repeats), "--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{config} on {device} failed:\n{proc.stderr.strip()[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    header = (f"{'backbone':<13} {'device':<20} {'in':>4} {'flow at':>8} {'ms/pair':>9} {'min':>8} {'features':>9} "
              f"{'+adapt':>8} {'head':>7} {'peak MiB':>9} {'infer MiB':>10} {'load':>5}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['config']:<13} {r['device'][:20]:<20} {r['size']:>4} {'x'.join(map(str, r['orig'])):>8} "
            f"{r['ms_pair']:>9.1f} {r['ms_pair_min']:>8.1f} {r['ms_features']:>9.1f} {r['ms_adapted']:>8.1f} "
            f"{r['head_params_m']:>6.1f}M {r['peak_mib']:>9.0f} {r['inference_mib']:>10.0f} {r['load_avg']:>5.1f}"
        )
    if rows:
        print(f"\nbatch 1, median of {args.repeats} after {args.warmup} warm-up runs; 'features' = both images "
              "through the frozen backbone, '+adapt' = plus the adaptation layers (the rest of ms/pair is "
              f"correlation, kernel soft-argmax and flow upsampling); CPU threads: {rows[0]['threads']} of "
              f"{rows[0]['cpus']} cores, 'load' = 1-min load average at the end of the run; ResNet-101 with random "
              "weights (speed does not depend on them). Paper: 24.9 ms/pair, 23.7 ms feature extraction "
              "(Titan RTX, ResNet-101, 320).")


if __name__ == "__main__":
    main()
