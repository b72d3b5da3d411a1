"""Speed and memory of the 4D convolution: the public code's loop vs semcorr's formulations.

Usage::

    python benchmarks/bench_conv4d.py                  # 25x25 grid (400 px at stride 16), CPU
    python benchmarks/bench_conv4d.py --grid 15 --backward --device cuda
    python benchmarks/bench_conv4d.py --impl reference,spectral,auto --reps 2

For each layer of NC-Net's PF-PASCAL NeighConsensus (kernel 5; channels
1→16, 16→16, 16→1), and for the whole symmetric NeighConsensus, it prints
for each implementation the wall-clock and CPU time per call (median of
``--reps`` after one warm-up call; CPU time is the steadier figure on
shared cores), the speed-up over the reference, the peak memory the call
needs beyond its inputs, and the largest difference to the reference.
Each measurement runs in a fresh subprocess so that peaks do not mix: on
CPU the peak is the process's maximum resident size (``resource``) minus
its resident size before the call; on CUDA ``torch.cuda.max_memory_allocated``
minus the memory allocated before the call.
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

#: ``spectral`` (inference only) is skipped with ``--backward``; ``auto`` takes it at inference for layers with ≥ 8 channels on either side.
IMPLEMENTATIONS = ["reference", "stack-input", "stack-output", "sum-rows", "spectral", "auto"]
#: (C_in, C_out) of the NeighConsensus layers; (0, 0) is the whole symmetric NeighConsensus.
LAYERS = [(1, 16), (16, 16), (16, 1), (0, 0)]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(impl: str, c_in: int, c_out: int, grid: int, batch: int, kernel: int, reps: int, backward: bool, device: str) -> dict:
    """One measurement (run inside a child process)."""
    import torch

    from semcorr.conv4d import conv4d, conv4d_reference

    torch.manual_seed(0)
    dev = torch.device(device)
    if c_in == 0:  # the whole PF-PASCAL NeighConsensus, symmetric mode
        from semcorr.ncnet_consensus import NeighConsensus

        nc = NeighConsensus([kernel] * 3, [16, 16, 1], symmetric=True).to(dev)
        x = torch.rand(batch, grid, grid, grid, grid, device=dev, requires_grad=backward)

        def stack(t):
            for conv in nc.conv[::2]:
                t = torch.relu(conv4d_reference(t, conv.weight, conv.bias) if impl == "reference" else conv4d(t, conv.weight, conv.bias, strategy=impl))
            return t

        def forward():
            if impl == "auto":  # the module itself (both orderings in one batch)
                return nc(x)
            t = x.unsqueeze(1)
            return (stack(t) + stack(t.permute(0, 1, 4, 5, 2, 3)).permute(0, 1, 4, 5, 2, 3)).squeeze(1)
    else:
        x = torch.rand(batch, c_in, grid, grid, grid, grid, device=dev, requires_grad=backward)
        w = (torch.rand(c_out, c_in, kernel, kernel, kernel, kernel, device=dev) - 0.5) * 0.1
        b = torch.rand(c_out, device=dev)
        w.requires_grad_(backward)

        def forward():
            return conv4d_reference(x, w, b) if impl == "reference" else conv4d(x, w, b, strategy=impl)

    def call():
        y = forward()
        if backward:
            y.sum().backward()
        return y

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    ctx = torch.enable_grad() if backward else torch.no_grad()
    with ctx:
        # initialise the conv libraries on a tiny problem, so their one-off buffers are not counted
        tiny = torch.rand(1, 1, kernel, kernel, kernel, kernel, device=dev)
        conv4d_reference(tiny, tiny.view(1, 1, *tiny.shape[2:])) if impl == "reference" else conv4d(tiny, tiny.view(1, 1, *tiny.shape[2:]))
        if dev.type == "cuda":
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            base = _rss_bytes()
        y = call()
        sync()
        peak = (torch.cuda.max_memory_allocated() if dev.type == "cuda" else _maxrss_bytes()) - base
        out = y.detach().double().cpu()
        del y
        times, cpu = [], []
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            call()
            sync()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    # a checksum-like summary to compare with the reference without shipping the volume back
    probe = out.flatten()[:: max(1, out.numel() // 4096)]
    return {"time": statistics.median(times), "cpu": statistics.median(cpu), "peak": max(peak, 0), "probe": probe.tolist()}


def _child(args: argparse.Namespace, impl: str, c_in: int, c_out: int) -> dict:
    cmd = [
        sys.executable, __file__, "--child", impl, str(c_in), str(c_out),
        "--grid", str(args.grid), "--batch", str(args.batch), "--kernel", str(args.kernel),
        "--reps", str(args.reps), "--device", args.device,
    ] + (["--backward"] if args.backward else [])
    env = dict(os.environ)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", type=int, default=25, help="cells per side of both feature grids (25 = 400 px at stride 16)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--kernel", type=int, default=5)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--backward", action="store_true", help="time forward + backward instead of forward only")
    p.add_argument("--device", default="cpu")
    p.add_argument("--impl", default=",".join(IMPLEMENTATIONS), help="comma-separated subset of " + ", ".join(IMPLEMENTATIONS))
    p.add_argument("--child", nargs=3, metavar=("IMPL", "C_IN", "C_OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        impl, c_in, c_out = args.child[0], int(args.child[1]), int(args.child[2])
        print(json.dumps(measure(impl, c_in, c_out, args.grid, args.batch, args.kernel, args.reps, args.backward, args.device)))
        return

    import torch

    impls = [i for i in args.impl.split(",") if i and not (args.backward and i == "spectral")]
    threads = torch.get_num_threads() if args.device == "cpu" else None
    mode = "forward+backward" if args.backward else "forward"
    print(
        f"conv4d {mode}, batch {args.batch}, grid {args.grid}^4, kernel {args.kernel}^4, "
        f"device {args.device}{f' ({threads} threads)' if threads else ''}, median of {args.reps}"
    )
    header = (
        f"{'layer':>11} {'implementation':>15} {'time/call':>11} {'speed-up':>9} {'cpu/call':>10} "
        f"{'peak extra':>11} {'max |diff|':>11}"
    )
    print(header)
    print("-" * len(header))
    for c_in, c_out in LAYERS:
        label = f"{c_in}->{c_out}" if c_in else "NC 16,16,1"
        ref = None
        for impl in impls:
            if c_in == 0 and impl not in ("reference", "auto"):
                continue
            r = _child(args, impl, c_in, c_out)
            if "error" in r:
                print(f"{label:>11} {impl:>15}  failed: {r['error']}")
                continue
            if impl == "reference":
                ref = r
            speed = f"{ref['time'] / r['time']:.2f}x" if ref else "-"
            diff = max(abs(a - b) for a, b in zip(ref["probe"], r["probe"])) if ref else float("nan")
            print(
                f"{label:>11} {impl:>15} {r['time'] * 1000:>9.1f}ms {speed:>9} {r['cpu'] * 1000:>8.1f}ms "
                f"{r['peak'] / 2**20:>9.1f}MB {diff:>11.2e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
