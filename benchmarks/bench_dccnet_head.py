"""DCCNet head against the official code, interleaved in one process, as ratios.

    python benchmarks/bench_dccnet_head.py --official /path/to/ShuaiyiHuang+DCCNet [--grid 25] [--repeats 3]
    python benchmarks/bench_dccnet_head.py                 # no official checkout: semcorr vs its own loop Conv4d

The head is everything after the backbone on fixed ``layer3``-sized features
(1024 channels, ``grid × grid``; 25 × 25 is a 400-pixel image): the spatial
context encoder, the shared consensus on the local and the context
correlation (one batched pass), the fusion consensus, the attention and both
merges. The same random head weights go into both implementations.

Reference, in order of preference:

* ``--official PATH``: the authors' code imported from a checkout given here
  (it is never part of semcorr): ``featureL2Norm``, ``FeatureCorrelation``,
  ``SpatialContextEncoder``, ``NeighConsensus`` + ``MutualMatching`` per
  branch, ``DynamicFusionNet`` and ``mergeA_mergeB_from_out``, on CPU;
* without it: semcorr's head with the public code's loop ``conv4d_reference``
  in every Conv4d (the old figure of this benchmark).

Runs alternate (reference, semcorr, reference, …) so that both see the same
machine load; wall-clock and CPU-time medians are printed with the load
average before and after. On a shared machine the CPU-time ratio is the
steadier one. The outputs are compared too (max error relative to the
largest value, and how many argmax matches agree).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _official_modules(path: str, net, grid: int):
    """The official DCCNet pieces on CPU, holding ``net``'s head weights."""
    import torch
    from torch.nn.modules.conv import _ConvNd

    torch.nn.Module.cuda = lambda self, *a, **k: self  # the public modules call .cuda() in __init__
    init = _ConvNd.__init__

    def init_with_padding_mode(self, *args, **kw):  # its Conv4d predates padding_mode
        if len(args) == 10:
            args = args + ("zeros",)
        init(self, *args, **kw)

    _ConvNd.__init__ = init_with_padding_mode
    sys.path.insert(0, path)
    from lib.modules import FeatureCorrelation, MutualMatching, NeighConsensus, featureL2Norm
    from lib.point_tnf_dynamic import mergeA_mergeB_from_out
    from models.dynamic_fusion_att import DynamicFusionNet
    from models.spatial_context_encoder import SpatialContextEncoder

    k = net.context_kernel_size
    sce = SpatialContextEncoder(kernel_size=k, input_dim=k * k + net.feature_channels, hidden_dim=net.context_channels)
    nc = NeighConsensus(use_cuda=False, kernel_sizes=list(net.ncons_kernel_sizes), channels=list(net.ncons_channels))
    dfn = DynamicFusionNet(att_scale_ncons_kernel_sizes=list(net.fusion_kernel_sizes),
                           att_scale_ncons_channels=list(net.fusion_channels))
    own = net.state_dict()
    official = lambda w: w.permute(2, 0, 1, 3, 4, 5).contiguous()  # the public Conv4d stores (k1, C_out, C_in, ...)
    with torch.no_grad():
        sce.embeddingFea[0].weight.copy_(own["context.embedding.0.weight"])
        sce.embeddingFea[0].bias.copy_(own["context.embedding.0.bias"])
        for i in (0, 2, 4):
            nc.conv[i].weight.copy_(official(own[f"refine.neigh_consensus.conv.{i}.weight"]))
            nc.conv[i].bias.copy_(own[f"refine.neigh_consensus.conv.{i}.bias"])
            dfn.extract_corrfeas.conv[i].weight.copy_(official(own[f"fusion.embed.conv.{i}.weight"]))
            dfn.extract_corrfeas.conv[i].bias.copy_(own[f"fusion.embed.conv.{i}.bias"])
        dfn.att[0].weight.copy_(own["fusion.attention.weight"])
        dfn.att[0].bias.copy_(own["fusion.attention.bias"])
    for m in (sce, nc, dfn):
        m.eval()
    corr = FeatureCorrelation(shape="4D", normalization=False)

    def head(raw_a, raw_b):
        fa, fb = featureL2Norm(raw_a), featureL2Norm(raw_b)
        run = lambda c: MutualMatching(nc(MutualMatching(c)))
        corr_out = torch.stack([run(corr(fa, fb)), run(corr(sce(fa), sce(fb)))], dim=1)
        att_a, att_b = dfn(corr_out)
        merged_a, merged_b = mergeA_mergeB_from_out((corr_out, att_a, att_b))  # (B, L_B, hA, wA), (B, L_A, hB, wB)
        b, ha, wa = att_a.shape[0], *att_a.shape[2:]
        hb, wb = att_b.shape[2:]
        return merged_a.view(b, hb, wb, ha, wa).permute(0, 3, 4, 1, 2), merged_b.view(b, ha, wa, hb, wb).permute(0, 3, 4, 1, 2)

    return head


def _compare(ref, got) -> str:
    """``max |ref − got| / max |ref|`` and agreeing argmax matches over the last two axes."""
    err = float((ref - got).abs().max() / ref.abs().max())
    same = (ref.flatten(3).argmax(-1) == got.flatten(3).argmax(-1)).float()
    return f"max rel err {err:.1e}, argmax equal {int(same.sum())}/{same.numel()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", help="path to a checkout of the official DCCNet code (ShuaiyiHuang/DCCNet)")
    ap.add_argument("--grid", type=int, default=25, help="feature grid (25: the published 400-pixel case)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls of each implementation, interleaved")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()

    import torch

    import semcorr.conv4d as c4
    from semcorr.models import build_model

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = build_model("dccnet", backbone="resnet101", backbone_weights="random").eval()
    g = torch.Generator().manual_seed(7)
    n = args.grid
    raw_a = torch.relu(torch.randn(1, net.feature_channels, n, n, generator=g))
    raw_b = torch.relu(torch.randn(1, net.feature_channels, n, n, generator=g) + 0.3 * raw_a)
    feats_a, feats_b = {net.layer: raw_a}, {net.layer: raw_b}

    def semcorr():
        m = net.head(feats_a, feats_b)
        return m.corr, m.corr_trg_to_src

    if args.official:
        reference_name = "official DCCNet"
        reference = _official_modules(args.official, net, n)
        reference_call = lambda: reference(raw_a, raw_b)
    else:
        reference_name = "semcorr + loop Conv4d"
        fast = c4.conv4d

        def reference_call():
            c4.conv4d = lambda x, w, b=None, strategy="auto": c4.conv4d_reference(x, w, b)
            try:
                return semcorr()
            finally:
                c4.conv4d = fast

    load_before = os.getloadavg()
    wall = {"reference": [], "semcorr": []}
    cpu = {"reference": [], "semcorr": []}
    with torch.no_grad():
        outs = {}
        for _ in range(args.repeats):
            for name, fn in (("reference", reference_call), ("semcorr", semcorr)):
                t0, c0 = time.perf_counter(), time.process_time()
                outs[name] = fn()
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    load_after = os.getloadavg()

    med = {k: statistics.median(v) for k, v in wall.items()}
    cmed = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"DCCNet head, ResNet-101 layer3 features {n}x{n}, batch 1, {torch.get_num_threads()} torch thread(s), "
          f"{args.repeats} interleaved calls each (medians)")
    print(f"load average (1/5/15 min) before {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f}, "
          f"after {load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f}; {os.cpu_count()} CPUs")
    print(f"{'':<24} {'wall s':>8} {'cpu s':>8}")
    print(f"{reference_name:<24} {med['reference']:>8.2f} {cmed['reference']:>8.2f}")
    print(f"{'semcorr':<24} {med['semcorr']:>8.2f} {cmed['semcorr']:>8.2f}")
    print(f"{'speed-up (ref/semcorr)':<24} {med['reference'] / med['semcorr']:>7.2f}x {cmed['reference'] / cmed['semcorr']:>7.2f}x")
    for label, ref, got in zip(("fused src->trg", "fused trg->src"), outs["reference"], outs["semcorr"]):
        print(f"{label}: {_compare(ref, got)}")


if __name__ == "__main__":
    main()
