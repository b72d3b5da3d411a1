"""MMNet speed and memory: time per pair and peak memory at inference (and a training step).

Each configuration runs in a fresh subprocess so its peak memory is its own:
on CPU the growth of the process's peak resident set during the measured
calls (model and inputs already built), on CUDA ``torch.cuda.max_memory_allocated``.

    python benchmarks/bench_mmnet.py                       # CPU, MobileNetV2 and random ResNet-101
    python benchmarks/bench_mmnet.py --device cuda --repeats 20
    python benchmarks/bench_mmnet.py --sizes 224x320,400x400 --levels 1,0 --train

The paper reports 86 ms per pair with ResNet-101 on a GPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_one(cfg: dict) -> dict:
    """Measure one configuration in this process; returns the figures as a dict."""
    import torch

    from core.models.mmnet import build_mmnet

    torch.manual_seed(0)
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    device = torch.device(cfg["device"])
    weights = "default" if cfg["backbone"] == "mobilenet_v2" else "random"
    model = build_mmnet(cfg["backbone"], weights, output_level=cfg["level"], upsample=cfg["upsample"]).to(device)
    h, w = cfg["size"]
    b = cfg["batch"]
    src = torch.randn(b, 3, h, w, device=device)
    trg = torch.randn(b, 3, h, w, device=device)
    cuda = device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize()

    if cfg["train"]:
        n = 8
        kps = torch.rand(b, n, 2, device=device) * torch.tensor([w - 1.0, h - 1.0], device=device)
        batch = {"src_image": src, "trg_image": trg, "src_kps": kps, "trg_kps": kps.flip(1)}
        model.train()

        def step():
            model.zero_grad(set_to_none=True)
            loss, _ = model.loss(batch)
            loss.backward()
    else:
        model.eval()

        def step():
            with torch.no_grad():
                out = model(src, trg)
            return out

    if cuda:
        step()  # warm-up: cuDNN autotuning, allocator
        sync()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _peak_rss_mb()
    times = []
    for _ in range(cfg["repeats"]):
        sync()
        t0 = time.perf_counter()
        out = step()
        sync()
        times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else _peak_rss_mb() - base
    chunked = (not cfg["train"]) and out.corr is None
    times.sort()
    first = times[0] if len(times) == 1 else times[len(times) // 2]
    return {"ms_per_pair": 1000.0 * first / b, "peak_mb": peak, "chunked": chunked, "stride": model.strides[cfg["level"]]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--backbones", default="mobilenet_v2,resnet101")
    p.add_argument("--sizes", default="224x320,320x320,400x400", help="HxW list")
    p.add_argument("--levels", default="1", help="output levels (0 = stride 4, 1 = stride 8)")
    p.add_argument("--upsample", default="nearest")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="timed calls; the median is reported")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--train", action="store_true", help="also time a training step (loss + backward)")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one JSON config and print its figures
    args = p.parse_args()

    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return

    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    header = f"{'backbone':<13} {'size':>8} {'mode':>5} {'level':>5} {'stride':>6} {'batch':>5} {'ms/pair':>9} {'peak MB':>9}  volume"
    print(f"MMNet benchmark on {device} (median of {args.repeats}; upsample {args.upsample})")
    print(header)
    print("-" * len(header))
    modes = ["test"] + (["train"] if args.train else [])
    for backbone in args.backbones.split(","):
        for size in args.sizes.split(","):
            h, w = (int(x) for x in size.lower().split("x"))
            for mode in modes:
                for level in ([1] if mode == "train" else [int(x) for x in args.levels.split(",")]):
                    cfg = {
                        "device": device,
                        "backbone": backbone,
                        "size": [h, w],
                        "level": level,
                        "upsample": args.upsample,
                        "batch": args.batch,
                        "repeats": args.repeats,
                        "threads": args.threads,
                        "train": mode == "train",
                    }
                    proc = subprocess.run(
                        [sys.executable, __file__, "--one", json.dumps(cfg)], capture_output=True, text=True
                    )
                    if proc.returncode != 0:
                        print(f"{backbone:<13} {size:>8} {mode:>5} {level:>5}  failed: {proc.stderr.strip().splitlines()[-1]}")
                        continue
                    r = json.loads(proc.stdout.strip().splitlines()[-1])
                    volume = "chunked" if r["chunked"] else ("-" if mode == "train" else "full")
                    print(
                        f"{backbone:<13} {size:>8} {mode:>5} {level:>5} {r['stride']:>6} {args.batch:>5} "
                        f"{r['ms_per_pair']:>9.1f} {r['peak_mb']:>9.1f}  {volume}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
