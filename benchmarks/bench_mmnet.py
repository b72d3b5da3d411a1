"""MMNet speed and memory: time per pair and peak memory at inference (and a training step).

Each configuration runs in a fresh subprocess so its peak memory is its own:
on CPU the growth of the process's peak resident set during the measured
calls (model and inputs already built), on CUDA ``torch.cuda.max_memory_allocated``.

    python benchmarks/bench_mmnet.py                       # CPU, MobileNetV2 and random ResNet-101
    python benchmarks/bench_mmnet.py --device cuda --repeats 20
    python benchmarks/bench_mmnet.py --sizes 224x320,400x400 --levels 1,0 --train

The paper reports 86 ms per pair with ResNet-101 on a GPU.

Head against the official code (``--official PATH`` to a checkout of
wintersun661/MMNet, imported from there, never part of semcorr)::

    python benchmarks/bench_mmnet.py --official /path/to/wintersun661+MMNet [--repeats 3] [--threads 1]

The same ResNet-101 block features of one 224×320 pair (the public test size)
and the same head weights go to the official ``MMNet.forward`` (its backbone
pass replaced by those features) and to semcorr; calls alternate so both see
the same load. Two semcorr figures: the same work as the official forward
(every level's volume, both directions) and the CLI's head (volumes down to
the output level, matches and confidences both ways). Wall-clock and
CPU-time medians, their ratios, the load average before and after, and each
level's largest difference to the official volumes are printed.
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

    from semcorr.models.mmnet import build_mmnet

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


def _official_mmnet(path: str):
    """The official ``models.Model.MMNet`` (ResNet-101) on CPU, without its unused volume upsamplers."""
    import types

    sys.path.insert(0, path)
    sys.modules.setdefault("gluoncvth", types.ModuleType("gluoncvth"))  # only its FCN backbone needs it
    from models import Model, resnet

    build = resnet.resnet101
    resnet.resnet101 = lambda pretrained=False, **kw: build(pretrained=False, **kw)  # weights come from semcorr
    net = Model.MMNet(types.SimpleNamespace(backbone_name="resnet101", ms_rate=4, feature_channel=21), device="cpu")
    for name in ("upsample_4", "upsample_8", "upsample_16", "feature_upsample_2", "feature_upsample_3", "feature_upsample_4"):
        delattr(net, name)  # ~1 GB of weights its forward never calls
    return net.eval()


def head_vs_official(path: str, repeats: int, threads: int) -> None:
    """Print the MMNet head's time against the official forward on the same features and weights (see the module doc)."""
    import os
    import statistics

    import torch

    from semcorr.correlation import transpose_corr
    from semcorr.models.mmnet import build_mmnet, own_to_public_key

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    ours = build_mmnet("resnet101", "random").eval()
    official = _official_mmnet(path)
    public = {own_to_public_key(k, ours.backbone): v for k, v in ours.state_dict().items() if not k.startswith("backbone.")}
    missing = official.load_state_dict(public, strict=False).missing_keys
    assert all(k.startswith(("backbone.", "msblock0.", "conv0_")) or k.endswith("_kernel.weight") or k.endswith("_kernel.bias")
               for k in missing), missing
    layers = ours.required_layers
    g = torch.Generator().manual_seed(2)
    images = torch.randn(2, 3, 224, 320, generator=g)
    with torch.no_grad():
        feats = ours.backbone(images, layers)
    fa = {k: v[:1] for k, v in feats.items()}
    fb = {k: v[1:] for k, v in feats.items()}
    stem = torch.zeros(2, 1, 1, 1)  # index 0, the stem: read by no level of the forward
    official.features = lambda imgs, device=None: [stem] + [feats[k] for k in layers]
    x = {"src_img": images[:1], "trg_img": images[1:]}

    def same_work():  # the official forward's outputs: every level, both directions, coarsest first
        vols = ours.volumes(ours.encode(fa), ours.encode(fb), stop_level=0)
        return [[v, transpose_corr(v)] for v in reversed(vols)]

    calls = {"official": lambda: official(x), "semcorr, same work": same_work, "semcorr head (CLI)": lambda: ours.head(fa, fb)}
    wall = {k: [] for k in calls}
    cpu = {k: [] for k in calls}
    load_before = os.getloadavg()
    with torch.no_grad():
        ref, got = calls["official"](), same_work()
        for _ in range(repeats):
            for name, fn in calls.items():
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    load_after = os.getloadavg()
    med = {k: statistics.median(v) for k, v in wall.items()}
    cmed = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"MMNet head, ResNet-101 features of a 224x320 pair, {threads} torch thread(s), {repeats} interleaved calls each (medians)")
    print(f"load average (1/5/15 min) before {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f}, "
          f"after {load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f}; {os.cpu_count()} CPUs")
    print(f"{'':<20} {'wall ms':>8} {'x official':>10} {'cpu ms':>8} {'x official':>10}")
    for name in calls:
        print(f"{name:<20} {1000 * med[name]:>8.0f} {med['official'] / med[name]:>9.2f}x "
              f"{1000 * cmed[name]:>8.0f} {cmed['official'] / cmed[name]:>9.2f}x")
    for k, ((ra, rb), (ga, gb)) in enumerate(zip(ref, got)):
        for direction, r, v in (("AB", ra, ga), ("BA", rb, gb)):
            err = float((r - v).abs().max() / r.abs().max())
            same = (r.flatten(3).flatten(1, 2).argmax(-1) == v.flatten(3).flatten(1, 2).argmax(-1)).float()
            print(f"official level {4 - k} {direction} {tuple(r.shape[1:])}: max rel err {err:.1e}, "
                  f"argmax equal {int(same.sum())}/{same.numel()}")


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
    p.add_argument("--official", help="path to a checkout of the official MMNet code: time the head against it")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one JSON config and print its figures
    args = p.parse_args()

    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return
    if args.official:
        head_vs_official(args.official, args.repeats, args.threads or 1)
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
