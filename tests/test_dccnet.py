"""DCCNet: context encoder, dynamic fusion, the model, training, authors' checkpoints, refine/show."""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from semcorr.ncnet_consensus import mutual_matching, softmax_over_target
from semcorr.dccnet_context import DynamicFusion, SpatialContextEncoder, spatial_descriptor, target_maps_on_grid
from semcorr.conv4d import conv4d_reference
from semcorr.correlation import correlation_4d, l2_normalize, transpose_corr
from semcorr.errors import WeightsError
from semcorr.images import image_to_tensor, load_image
from semcorr.models.dccnet import build_dccnet
from semcorr.models.official import conv4d_weight_to_official
from semcorr.weights import save_checkpoint

from conftest import CALTECH
from helpers_4d import one_thread, randomize, resnet_lookalike_features, transpose_6d  # noqa: F401 - one_thread is autouse

SMALL = {
    "ncons_kernel_sizes": [3, 3],
    "ncons_channels": [4, 1],
    "fusion_kernel_sizes": [3],
    "fusion_channels": [1],
    "fusion_grid": 8,
}


def _features(b=1, c=96, h=6, w=6, seed=0):
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- context encoder


def _public_spatial_descriptor(data: torch.Tensor, k: int) -> torch.Tensor:
    """Transcription of the public generate_spatial_descriptor: a loop over window offsets."""
    p = k // 2
    b, c, h, w = data.shape
    padded = F.pad(data, (p, p, p, p))
    out = torch.zeros(b, k * k, h, w, dtype=data.dtype)
    centre = padded[:, :, p : p + h, p : p + w]
    i = 0
    for dy in range(-p, p + 1):
        for dx in range(-p, p + 1):
            out[:, i] = (padded[:, :, p + dy : p + dy + h, p + dx : p + dx + w] * centre).sum(1)
            i += 1
    return out


@pytest.mark.parametrize("k", [3, 25])
def test_spatial_descriptor_matches_the_public_loop(k):
    x = _features(2, c=8, h=6, w=7, seed=1)
    got = spatial_descriptor(x, k)
    assert got.shape == (2, k * k, 6, 7)
    assert torch.allclose(got, _public_spatial_descriptor(x, k), atol=1e-5)
    # the centre channel is the squared norm of each feature
    assert torch.allclose(got[:, (k * k) // 2], (x * x).sum(1), atol=1e-5)


def test_context_encoder_is_concat_l2norm_then_1x1_conv():
    # The public SpatialContextEncoder: cat([x, l2norm(descriptor(x))]) → 1×1 conv → ReLU, with x
    # taken as given (DCCNet hands it the already L2-normalised features).
    enc = SpatialContextEncoder(8, kernel_size=5, out_channels=6)
    assert enc.embedding[0].weight.shape == (6, 8 + 25, 1, 1)
    for x in (l2_normalize(_features(1, c=8, h=5, w=4, seed=2)), _features(1, c=8, h=5, w=4, seed=3)):
        cat = torch.cat([x, l2_normalize(_public_spatial_descriptor(x, 5))], 1)
        expected = torch.relu(F.conv2d(cat, enc.embedding[0].weight, enc.embedding[0].bias))
        assert torch.allclose(enc(x), expected, atol=1e-6)


# ----------------------------------------------------------------------------- dynamic fusion


def test_target_maps_on_grid_copies_or_resamples():
    c = torch.rand(2, 3, 4, 5, 6)
    exact = target_maps_on_grid(c, (5, 6))
    assert exact.shape == (2, 30, 3, 4)
    assert torch.equal(exact, c.reshape(2, 12, 30).transpose(1, 2).reshape(2, 30, 3, 4))
    # a map linear in the target coordinates stays exactly linear on any grid
    ys, xs = torch.linspace(-1, 1, 5), torch.linspace(-1, 1, 6)
    lin = (0.3 * xs.view(1, 6) - 0.7 * ys.view(5, 1) + 0.1).expand(2, 3, 4, 5, 6)
    res = target_maps_on_grid(lin, (9, 4)).view(2, 9, 4, 3, 4)
    gy, gx = torch.linspace(-1, 1, 9), torch.linspace(-1, 1, 4)
    expected = (0.3 * gx.view(1, 4) - 0.7 * gy.view(9, 1) + 0.1).view(1, 9, 4, 1, 1)
    assert torch.allclose(res, expected.expand_as(res), atol=1e-6)


def test_dynamic_fusion_at_the_published_grid_size():
    torch.manual_seed(0)
    fusion = DynamicFusion([3], [1], grid=(4, 5))
    randomize(fusion.embed, 4)
    local, context = torch.rand(2, 3, 3, 4, 5), torch.rand(2, 3, 3, 4, 5)
    fused_src, fused_trg, w_src, w_trg = fusion(local, context)
    assert fused_src.shape == (2, 3, 3, 4, 5) and fused_trg.shape == (2, 4, 5, 3, 3)
    assert w_src.shape == (2, 2, 3, 3) and w_trg.shape == (2, 2, 4, 5)
    # by hand: embed, read as (B, hB·wB, hA, wA), stack, 1×1 conv, softmax over the 2 channels
    emb = [fusion.embed(c) for c in (local, context)]
    stacked = torch.cat([e.permute(0, 3, 4, 1, 2).reshape(2, 20, 3, 3) for e in emb], 1)
    w = torch.softmax(F.conv2d(stacked, fusion.attention.weight, fusion.attention.bias), 1)
    assert torch.allclose(w_src, w, atol=1e-6)
    expected = w[:, 0, :, :, None, None] * softmax_over_target(local) + w[:, 1, :, :, None, None] * softmax_over_target(context)
    assert torch.allclose(fused_src, expected, atol=1e-6)
    # distributions over the target; weights sum to one
    assert torch.allclose(fused_src.sum((-2, -1)), torch.ones(2, 3, 3), atol=1e-6)
    assert torch.allclose(w_trg.sum(1), torch.ones(2, 4, 5), atol=1e-6)


def test_dynamic_fusion_is_symmetric_under_swapping_the_images():
    fusion = DynamicFusion([3], [1], grid=(4, 4))
    randomize(fusion.embed, 5)
    local, context = torch.rand(1, 4, 4, 4, 4), torch.rand(1, 4, 4, 4, 4)
    fs, ft, ws, wt = fusion(local, context)
    fs2, ft2, ws2, wt2 = fusion(transpose_corr(local), transpose_corr(context))
    assert torch.allclose(fs2, ft, atol=1e-6) and torch.allclose(ft2, fs, atol=1e-6)
    assert torch.allclose(ws2, wt, atol=1e-6) and torch.allclose(wt2, ws, atol=1e-6)


def test_forced_weights_select_one_branch():
    fusion = DynamicFusion([3], [1], grid=(3, 3))
    with torch.no_grad():
        fusion.attention.weight.zero_()
        fusion.attention.bias.copy_(torch.tensor([30.0, -30.0]))  # all weight on the local branch
    local, context = torch.rand(1, 3, 3, 5, 4), torch.rand(1, 3, 3, 5, 4)  # another grid: resampled
    fs, ft, ws, _ = fusion(local, context)
    assert torch.allclose(ws[:, 0], torch.ones(1, 3, 3), atol=1e-6)
    assert torch.allclose(fs, softmax_over_target(local), atol=1e-6)
    assert torch.allclose(ft, softmax_over_target(transpose_corr(local)), atol=1e-6)


# ----------------------------------------------------------------------------- the model


def test_head_composes_the_shared_consensus_and_the_fusion():
    model = build_dccnet(backbone_weights="random", context_kernel_size=5, **SMALL)
    randomize(model.refine, 6)
    randomize(model.fusion.embed, 7)
    fa, fb = _features(1, seed=8), _features(1, h=5, w=7, seed=9)
    refine = lambda c: mutual_matching(model.refine.neigh_consensus(mutual_matching(c)))  # noqa: E731
    local = refine(correlation_4d(l2_normalize(fa), l2_normalize(fb)))
    ca, cb = model.context(l2_normalize(fa)), model.context(l2_normalize(fb))
    context = refine(correlation_4d(ca, cb))  # the embeddings are correlated as they are
    fused_src, fused_trg, w_src, w_trg = model.fusion(local, context)
    out = model.fused({"features.13": fa}, {"features.13": fb})
    assert torch.allclose(out["local"], local, atol=1e-6) and torch.allclose(out["context"], context, atol=1e-6)
    m = model.head({"features.13": fa}, {"features.13": fb})
    assert torch.allclose(m.corr, fused_src, atol=1e-6)
    assert torch.allclose(m.extra["fusion_src_to_trg"], w_src, atol=1e-6)
    assert torch.allclose(m.extra["fusion_trg_to_src"], w_trg, atol=1e-6)
    assert torch.allclose(m.corr_trg_to_src, fused_trg, atol=1e-6)
    best = fused_trg.reshape(1, 35, 36).argmax(-1)
    xs, ys = torch.linspace(-1, 1, 6), torch.linspace(-1, 1, 6)
    assert torch.allclose(m.trg_to_src.reshape(35, 2), torch.stack([xs[best[0] % 6], ys[best[0] // 6]], -1))


@pytest.mark.parametrize("size", [128, 160])
def test_published_architecture_runs_at_any_image_size(size):
    torch.manual_seed(0)
    model = build_dccnet()  # MobileNetV2 features.13, 25×25 context window, 25×25 fusion grid
    assert model.context.embedding[0].weight.shape == (96, 96 + 625, 1, 1)
    assert model.fusion.attention.weight.shape == (2, 2 * 625, 1, 1)
    with torch.no_grad():
        m = model(torch.randn(1, 3, size, size), torch.randn(1, 3, size, size))
    n = size // 16
    assert m.corr.shape == (1, n, n, n, n) and m.src_to_trg.shape == (1, n, n, 2)
    assert m.extra["fusion_src_to_trg"].shape == (1, 2, n, n)
    assert torch.allclose(m.corr.sum((-2, -1)), torch.ones(1, n, n), atol=1e-5)
    assert torch.all((m.src_to_trg >= -1) & (m.src_to_trg <= 1))


def test_options_and_config_round_trip():
    model = build_dccnet(backbone_weights="random", **SMALL)
    cfg = model.config()
    assert cfg["context_kernel_size"] == 25 and cfg["context_channels"] == 96 and cfg["fusion_grid"] == [8, 8]
    assert build_dccnet(**{k: v for k, v in cfg.items() if k != "model"}).config() == cfg
    assert model.loss_weights == {"fused": 1.0, "local": 1.0, "context": 1.0}
    with pytest.raises(WeightsError, match="no dccnet weights are shipped for backbone resnet50"):
        build_dccnet("resnet50", backbone_weights="random", weights="default")


def test_training_a_few_adam_steps_lowers_the_weak_loss(shared_data):
    torch.manual_seed(0)
    files = sorted((CALTECH / "Motorbikes").glob("*.jpg"))[:8]
    images = torch.cat([image_to_tensor(load_image(f), 128) for f in files])
    batch = {"src_image": images[0::2], "trg_image": images[1::2]}  # 4 same-class pairs
    model = build_dccnet(**SMALL)
    params = [p for p in model.parameters() if p.requires_grad]
    assert params and not any(p.requires_grad for p in model.backbone.parameters())
    opt = torch.optim.Adam(params, lr=5e-4)

    def evaluate():
        model.eval()
        with torch.no_grad():
            return model.loss(batch)

    before, logs_before = evaluate()
    model.train()
    for _ in range(5):
        opt.zero_grad()
        loss, logs = model.loss(batch)
        loss.backward()
        opt.step()
    after, logs_after = evaluate()
    assert set(logs) == {"loss", "fused_pos", "fused_neg", "local_pos", "local_neg", "context_pos", "context_neg"}
    assert logs_before["loss"] == pytest.approx(
        sum(logs_before[f"{b}_neg"] - logs_before[f"{b}_pos"] for b in ("fused", "local", "context")), abs=1e-6
    )
    assert after.item() < before.item() - 1e-4
    assert logs_after["fused_pos"] > logs_before["fused_pos"]


# ----------------------------------------------------------------------------- authors' checkpoint


def test_official_dccnet_checkpoint_round_trip(tmp_path):
    g = torch.Generator().manual_seed(0)
    rnd = lambda *s: torch.randn(*s, generator=g) * 0.01  # noqa: E731
    state = resnet_lookalike_features("resnet101", seed=2)
    nc = [rnd(4, 1, 3, 3, 3, 3), rnd(1, 4, 3, 3, 3, 3)]
    att_nc = [rnd(1, 1, 3, 3, 3, 3)]
    for i, w in zip((0, 2), nc):
        state[f"NeighConsensus.conv.{i}.weight"] = conv4d_weight_to_official(w)
        state[f"NeighConsensus.conv.{i}.bias"] = rnd(w.shape[0]).abs()
    state["SpatialContextEncoder.embeddingFea.0.weight"] = rnd(1024, 1024 + 25, 1, 1)
    state["SpatialContextEncoder.embeddingFea.0.bias"] = rnd(1024)
    state["DynamicFusionNet.NeighConsensus.conv.0.weight"] = conv4d_weight_to_official(att_nc[0])
    state["DynamicFusionNet.NeighConsensus.conv.0.bias"] = rnd(1).abs()
    state["DynamicFusionNet.att_conv.0.weight"] = rnd(2, 2 * 16, 1, 1) * 100
    state["DynamicFusionNet.att_conv.0.bias"] = rnd(2)
    args = argparse.Namespace(
        ncons_kernel_sizes=[3, 3], ncons_channels=[4, 1], sce_kernel_size=5, sce_hidden_dim=1024,
        att_scale_ncons_kernel_sizes=[3], att_scale_ncons_channels=[1],
    )
    path = tmp_path / "dccnet.pth.tar"
    torch.save({"state_dict": collections.OrderedDict(state), "args": args, "train_loss": np.zeros(3)}, path)

    model = build_dccnet(backbone="resnet101", weights=path)
    cfg = model.config()
    assert (cfg["context_kernel_size"], cfg["context_channels"], cfg["fusion_grid"]) == (5, 1024, [4, 4])
    assert cfg["ncons_channels"] == [4, 1] and cfg["fusion_kernel_sizes"] == [3]
    assert torch.equal(model.fusion.embed.conv[0].weight, att_nc[0])
    assert torch.equal(model.context.embedding[0].weight, state["SpatialContextEncoder.embeddingFea.0.weight"])
    assert torch.equal(model.fusion.attention.weight, state["DynamicFusionNet.att_conv.0.weight"])
    # the head equals the public pipeline computed with the file's weights
    fa, fb = _features(1, c=1024, h=4, w=4, seed=10), _features(1, c=1024, h=4, w=4, seed=11)

    def consensus(c, layers):
        x = c.unsqueeze(1)

        def stack(t):
            for i, w in enumerate(layers):
                t = torch.relu(conv4d_reference(t, w, state[f"{'DynamicFusionNet.' if layers is att_nc else ''}NeighConsensus.conv.{2 * i}.bias"]))
            return t

        return (stack(x) + transpose_6d(stack(transpose_6d(x)))).squeeze(1)

    refine = lambda c: mutual_matching(consensus(mutual_matching(c), nc))  # noqa: E731
    sce_w, sce_b = state["SpatialContextEncoder.embeddingFea.0.weight"], state["SpatialContextEncoder.embeddingFea.0.bias"]

    def encode(f):
        # the public model: FeatureExtraction L2-normalises, the encoder concatenates the features
        # with their normalised descriptor, and FeatureCorrelation(normalization=False) correlates
        # the embeddings as they are
        f = l2_normalize(f)
        cat = torch.cat([f, l2_normalize(_public_spatial_descriptor(f, 5))], 1)
        return torch.relu(F.conv2d(cat, sce_w, sce_b))

    def fused(context_corr):
        local = refine(correlation_4d(l2_normalize(fa), l2_normalize(fb)))
        context = refine(context_corr)
        emb = [consensus(c, att_nc) for c in (local, context)]
        w_att, b_att = state["DynamicFusionNet.att_conv.0.weight"], state["DynamicFusionNet.att_conv.0.bias"]
        # MergedA (per source cell) and MergedB (per target cell) of point_tnf_dynamic.py
        a_in = torch.cat([e.permute(0, 3, 4, 1, 2).reshape(1, 16, 4, 4) for e in emb], 1)
        b_in = torch.cat([e.reshape(1, 16, 4, 4) for e in emb], 1)
        wa, wb = torch.softmax(F.conv2d(a_in, w_att, b_att), 1), torch.softmax(F.conv2d(b_in, w_att, b_att), 1)
        merged_a = wa[:, 0, :, :, None, None] * softmax_over_target(local) + wa[:, 1, :, :, None, None] * softmax_over_target(context)
        lt, ct = transpose_corr(local), transpose_corr(context)
        merged_b = wb[:, 0, :, :, None, None] * softmax_over_target(lt) + wb[:, 1, :, :, None, None] * softmax_over_target(ct)
        return merged_a, merged_b

    ea, eb = encode(fa), encode(fb)
    merged_a, merged_b = fused(correlation_4d(ea, eb))
    m = model.head({"layer3": fa}, {"layer3": fb})
    assert torch.allclose(m.corr, merged_a, atol=1e-5)
    assert torch.allclose(m.corr_trg_to_src, merged_b, atol=1e-5)
    # the context branch itself; normalising the embeddings again (the old fault) is far from it
    context = model.fused({"layer3": fa}, {"layer3": fb})["context"]
    assert torch.allclose(context, refine(correlation_4d(ea, eb)), rtol=1e-4, atol=1e-7)
    wrong = refine(correlation_4d(l2_normalize(ea), l2_normalize(eb)))
    assert (wrong - context).abs().max() > 0.1 * context.abs().max()
    # an NC-Net file is not a DCCNet one
    ncnet_only = {k: v for k, v in state.items() if not k.startswith(("SpatialContextEncoder", "DynamicFusionNet"))}
    torch.save({"state_dict": ncnet_only, "args": args}, tmp_path / "ncnet.pth.tar")
    with pytest.raises(WeightsError, match="not a DCCNet checkpoint"):
        build_dccnet(backbone="resnet101", weights=tmp_path / "ncnet.pth.tar")


# ----------------------------------------------------------------------------- refine and show


def _features_file(tmp_path: Path, n_pairs: int = 2) -> Path:
    from semcorr.io.records import PairRecord
    from semcorr.io.stream import write_records

    img = CALTECH / "Motorbikes"
    recs = []
    for i in range(n_pairs):
        rec = PairRecord(f"pair{i}", str(img / "image_0001.jpg"), str(img / "image_0002.jpg"), (96, 128), (112, 96))
        rec.features["src"]["features.13"] = _features(1, h=6, w=8, seed=20 + i)[0].numpy()
        rec.features["trg"]["features.13"] = _features(1, h=7, w=6, seed=40 + i)[0].numpy()
        rec.feature_attrs["features.13"] = {"backbone": "mobilenet_v2", "weights": "test", "stride": 16}
        recs.append(rec)
    path = tmp_path / "feats.h5"
    write_records(path, recs, "test")
    return path


def test_refine_cli_writes_the_models_corr_and_fusion_weights(tmp_path):
    from semcorr.io.stream import iter_records
    from semcorr_cli.main import app

    model = build_dccnet(backbone_weights="random", context_kernel_size=5, **SMALL)
    randomize(model.refine, 12)
    ckpt = tmp_path / "dcc.safetensors"
    save_checkpoint(ckpt, model.head_state_dict(), {"config": model.config()})
    feats = _features_file(tmp_path)
    out = tmp_path / "refined.h5"
    res = CliRunner().invoke(app, ["refine", str(feats), "--model", "dccnet", "--weights", str(ckpt), "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    recs = list(iter_records(out))
    assert [r.pair_id for r in recs] == ["pair0", "pair1"]
    for rec in recs:
        fa = {"features.13": torch.from_numpy(rec.features["src"]["features.13"])[None]}
        fb = {"features.13": torch.from_numpy(rec.features["trg"]["features.13"])[None]}
        with torch.no_grad():
            m = model.head(fa, fb)
        assert rec.corr.shape == (6, 8, 7, 6)
        assert np.allclose(rec.corr, m.corr[0].numpy(), atol=1e-6)
        assert np.allclose(rec.extra["dccnet/fusion_src_to_trg"], m.extra["fusion_src_to_trg"][0].numpy(), atol=1e-6)
        assert rec.extra["dccnet/fusion_trg_to_src"].shape == (2, 7, 6)
        assert rec.corr_attrs["method"] == "dccnet" and rec.corr_attrs["weights"].startswith("file:dcc.safetensors")
    # a records file without the model's layer is a usage error (exit 2)
    bad = CliRunner().invoke(app, ["refine", str(feats), "--model", "dccnet", "--weights", "none", "-o", str(tmp_path / "x.h5"), "-q", "--device", "cpu"])
    assert bad.exit_code == 0  # the untrained head still runs
    missing = CliRunner().invoke(app, ["refine", str(tmp_path / "nope.h5"), "--model", "ncnet", "-o", str(tmp_path / "y.h5")])
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_refine_then_flow_gives_dccnets_matches_in_both_directions(tmp_path):
    # `refine --model dccnet | flow` must match each direction on its own merge (MergedA for
    # source→target, MergedB for target→source), as `flow --model dccnet` and the head do.
    from semcorr.io.stream import iter_records
    from semcorr_cli.main import app

    model = build_dccnet(backbone_weights="random", context_kernel_size=5, **SMALL)
    randomize(model.refine, 13)
    randomize(model.fusion.embed, 14)
    ckpt = tmp_path / "dcc.safetensors"
    save_checkpoint(ckpt, model.head_state_dict(), {"config": model.config()})
    feats = _features_file(tmp_path, n_pairs=1)
    run = lambda *a: CliRunner().invoke(app, [*a, "-q", "--device", "cpu"])  # noqa: E731
    assert run("refine", str(feats), "--model", "dccnet", "--weights", str(ckpt), "-o", str(tmp_path / "r.h5")).exit_code == 0
    res = run("flow", str(tmp_path / "r.h5"), "-o", str(tmp_path / "piped.h5"))
    assert res.exit_code == 0, res.output
    res = run("flow", str(feats), "--model", "dccnet", "--weights", str(ckpt), "-o", str(tmp_path / "direct.h5"))
    assert res.exit_code == 0, res.output
    (refined,), (piped,), (direct,) = (list(iter_records(tmp_path / n)) for n in ("r.h5", "piped.h5", "direct.h5"))
    assert refined.corr_attrs["matching"] == "argmax" and refined.corr_attrs["scores_trg_to_src"] == "extra/dccnet/fused_trg_to_src"
    merged_b = refined.extra["dccnet/fused_trg_to_src"]
    assert merged_b.shape == (7, 6, 6, 8) and np.allclose(merged_b.reshape(42, 48).sum(-1), 1.0, atol=1e-5)
    # the second merge is not the transpose of the first: matching the transpose would differ
    assert not np.allclose(merged_b, refined.corr.transpose(2, 3, 0, 1), atol=1e-4)
    for key in ("src_to_trg", "trg_to_src"):
        assert np.allclose(piped.flow[key], direct.flow[key], atol=1e-4), key
        assert np.allclose(piped.confidence[key], direct.confidence[key], atol=1e-6), key
    assert piped.flow_attrs["method"] == "argmax" and piped.flow_attrs["model"] == "dccnet"
    assert "dccnet/fused_trg_to_src" not in piped.extra  # dropped with corr
    # target→source matches are the argmax of MergedB over source cells
    best = merged_b.reshape(42, 48).argmax(-1)
    fa = {"features.13": torch.from_numpy(refined.features["src"]["features.13"])[None]}
    fb = {"features.13": torch.from_numpy(refined.features["trg"]["features.13"])[None]}
    with torch.no_grad():
        m = model.head(fa, fb)
    xs, ys = torch.linspace(-1, 1, 8), torch.linspace(-1, 1, 6)
    assert torch.allclose(m.trg_to_src.reshape(42, 2), torch.stack([xs[best % 8], ys[best // 8]], -1))
    # an explicit --method still wins
    res = run("flow", str(tmp_path / "r.h5"), "--method", "soft-argmax", "-o", str(tmp_path / "soft.h5"))
    assert res.exit_code == 0 and next(iter_records(tmp_path / "soft.h5")).flow_attrs["method"] == "soft-argmax"


def test_show_cli_draws_one_panel_per_branch(tmp_path):
    from PIL import Image

    from semcorr.viz import colour_bar
    from semcorr_cli.main import app
    from semcorr.viz import heatmap_figure

    feats = _features_file(tmp_path, 1)
    fig = tmp_path / "fig.png"
    res = CliRunner().invoke(app, ["show", str(feats), "--model", "dccnet", "--weights", "none", "--point", "40,30", "-o", str(fig)])
    assert res.exit_code == 0, res.output
    assert "local (w=" in res.output and "context (w=" in res.output and "fused" in res.output
    img = Image.open(fig)
    # source + local + context + fused, each 240 px high plus a title bar; the heatmaps with a colour bar below
    bar = colour_bar(100, 0.0, 1.0, "score").height
    assert img.height == 240 + 22 + bar and img.width > 4 * 200
    # the generic figure takes any list of panels (e.g. one per scale)
    src = Image.new("RGB", (64, 48), (0, 0, 0))
    heat = np.zeros((3, 4))
    heat[1, 2] = 1.0
    f = heatmap_figure(src, (10, 10), src, [("scale 1", heat), ("scale 2", heat.T.copy())], height=48)
    assert f.size == (64 * 3 + 6 * 2, 48 + 22 + bar)
    bad = CliRunner().invoke(app, ["show", str(feats), "--model", "dccnet", "--weights", "none", "--point", "500,30", "-o", str(fig)])
    assert bad.exit_code == 2 and "outside" in bad.output


def test_hypercolumn_features_feed_both_branches():
    """With hypercolumn layers the context encoder reads their 352 channels on the stride-16 grid."""
    from semcorr.models.dccnet import build_dccnet

    model = build_dccnet(
        backbone_weights="random",
        hypercolumn="features.6,features.10,features.13,features.16",
        center=True,
        ncons_kernel_sizes=[3],
        ncons_channels=[1],
        fusion_kernel_sizes=[3],
        fusion_channels=[1],
        fusion_grid=4,
        context_kernel_size=3,
        context_channels=8,
    )
    assert model.context.in_channels == 352 and model.config()["hypercolumn"][0] == "features.6"
    with torch.no_grad():
        m = model(torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 80))
    assert m.corr.shape == (1, 4, 4, 4, 5)
    assert torch.allclose(m.corr.sum(dim=(3, 4)), torch.ones(1, 4, 4), atol=1e-4)  # distributions over the target


def test_dccnet_starts_from_an_ncnet_consensus(tmp_path):
    """An NC-Net checkpoint initialises DCCNet's shared consensus; context and fusion stay fresh."""
    from semcorr.models.dccnet import build_dccnet
    from semcorr.models.ncnet import build_ncnet
    from semcorr.weights import save_checkpoint

    opts = {"ncons_kernel_sizes": [3, 3], "ncons_channels": [4, 1]}
    nc = build_ncnet(backbone_weights="random", center=True, **opts)
    torch.manual_seed(3)
    for p in nc.refine.parameters():
        p.data.normal_()
    path = tmp_path / "nc.safetensors"
    save_checkpoint(path, nc.head_state_dict(), {"config": nc.config()})
    small = {"fusion_kernel_sizes": [3], "fusion_channels": [1], "fusion_grid": 4, "context_kernel_size": 3}
    dcc = build_dccnet(backbone_weights="random", weights=path, **small)
    assert dcc.config()["center"] is True and dcc.ncons_channels == [4, 1]
    for k, v in nc.refine.state_dict().items():
        assert torch.equal(dcc.refine.state_dict()[k], v)
    with pytest.raises(WeightsError, match="trained with ncons_channels"):
        build_dccnet(backbone_weights="random", weights=path, ncons_channels=[8, 1], **small)
    # the other way round is refused: a DCCNet checkpoint is not an NC-Net
    dpath = tmp_path / "dcc.safetensors"
    save_checkpoint(dpath, dcc.head_state_dict(), {"config": dcc.config()})
    with pytest.raises(WeightsError, match="holds dccnet weights, not ncnet"):
        build_ncnet(backbone_weights="random", weights=dpath)
