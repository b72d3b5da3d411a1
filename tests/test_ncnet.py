"""NC-Net: mutual matching, neighbourhood consensus, the model, keypoint transfer, loss, checkpoints."""

from __future__ import annotations

import argparse
import pathlib

import numpy as np
import pytest
import torch

from semcorr.ncnet_consensus import NeighConsensus, mutual_matching
from semcorr.conv4d import conv4d_reference
from semcorr.correlation import correlation_4d, l2_normalize, transpose_corr
from semcorr.errors import UsageError, WeightsError
from semcorr.geometry import cell_grid
from semcorr.losses.weak import matching_score, weak_loss
from semcorr.models.ncnet import build_ncnet
from semcorr.models.official import conv4d_weight_to_official
from semcorr.weights import save_checkpoint

from helpers_4d import one_thread, randomize, resnet_lookalike_features, transpose_6d  # noqa: F401 - one_thread is autouse

TINY = {"ncons_kernel_sizes": [3, 3], "ncons_channels": [4, 1]}


# ----------------------------------------------------------------------------- mutual matching


def test_mutual_matching_hand_computed():
    # one source row of 2 cells × one target row of 2 cells
    c = torch.tensor([[1.0, 0.5], [0.25, 0.2]]).view(1, 1, 2, 1, 2)
    eps = 1e-5
    best_src = [1.0, 0.25]  # best score of each source cell over the target
    best_trg = [1.0, 0.5]  # best score of each target cell over the source
    expected = torch.tensor(
        [[v**3 / ((best_src[i] + eps) * (best_trg[j] + eps)) for j, v in enumerate(row)] for i, row in enumerate([[1.0, 0.5], [0.25, 0.2]])]
    )
    got = mutual_matching(c).view(2, 2)
    assert torch.allclose(got, expected, atol=1e-7, rtol=1e-6)
    # mutual best pairs keep ~their score, the others shrink
    assert got[0, 0] == pytest.approx(1.0, abs=1e-4)
    assert got[1, 1] == pytest.approx(0.2**3 / (0.25 * 0.5), rel=1e-4)


def test_mutual_matching_commutes_with_transpose():
    c = torch.rand(2, 3, 4, 5, 2)
    assert torch.equal(mutual_matching(transpose_corr(c)), transpose_corr(mutual_matching(c)))


# ----------------------------------------------------------------------------- neighbourhood consensus


@pytest.mark.parametrize("shape", [(2, 4, 5, 4, 5), (1, 3, 4, 5, 2)])
def test_symmetric_consensus_is_conv_plus_transposed_conv(shape):
    nc = NeighConsensus([3, 3], [3, 1], symmetric=True)
    randomize(nc)
    c = torch.rand(*shape)

    def stack(x):  # the layers with the loop reference and explicit ReLUs
        for conv in (nc.conv[0], nc.conv[2]):
            x = torch.relu(conv4d_reference(x, conv.weight, conv.bias))
        return x

    x = c.unsqueeze(1)
    expected = (stack(x) + transpose_6d(stack(transpose_6d(x)))).squeeze(1)
    out = nc(c)
    assert out.shape == c.shape
    assert torch.allclose(out, expected, atol=1e-6)
    assert (out >= 0).all() and (out > 0).any()
    # swapping the images swaps the output's axes
    assert torch.allclose(nc(transpose_corr(c)), transpose_corr(out), atol=1e-6)


def test_non_symmetric_consensus_is_the_plain_stack():
    nc = NeighConsensus([3], [1], symmetric=False)
    randomize(nc, 1)
    c = torch.rand(1, 4, 4, 4, 4)
    w, b = nc.conv[0].weight, nc.conv[0].bias
    assert torch.allclose(nc(c), torch.relu(conv4d_reference(c.unsqueeze(1), w, b)).squeeze(1), atol=1e-6)
    assert not torch.allclose(nc(transpose_corr(c)), transpose_corr(nc(c)), atol=1e-3)


def test_consensus_configuration_is_checked():
    assert [m.kernel_size[0] for m in NeighConsensus().conv[::2]] == [5, 5, 5]
    assert [m.out_channels for m in NeighConsensus().conv[::2]] == [16, 16, 1]
    for bad in (([3, 3], [4, 2]), ([3], [4, 1]), ([4], [1])):
        with pytest.raises(ValueError):
            NeighConsensus(*bad)


# ----------------------------------------------------------------------------- the model


def _features(b=1, c=96, h=6, w=6, seed=0):
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_head_is_the_published_pipeline():
    model = build_ncnet(backbone_weights="random", **TINY)
    randomize(model.refine)
    fa, fb = _features(2, seed=1), _features(2, h=5, w=7, seed=2)
    nc = model.refine.neigh_consensus
    raw = correlation_4d(l2_normalize(fa, eps=1e-6), l2_normalize(fb, eps=1e-6))
    expected = mutual_matching(nc(mutual_matching(raw)))
    m = model.head({"features.13": fa}, {"features.13": fb})
    assert m.corr.shape == (2, 6, 6, 5, 7)
    assert torch.allclose(m.corr, expected, atol=1e-6)
    assert m.src_to_trg.shape == (2, 6, 6, 2) and m.trg_to_src.shape == (2, 5, 7, 2)
    # argmax over the target / over the source
    flat = expected.reshape(2, 36, 35)
    idx = flat.argmax(-1)
    grid_b = cell_grid(5, 7).reshape(35, 2)
    assert torch.allclose(m.src_to_trg.reshape(2, 36, 2), grid_b[idx])
    assert m.confidence_src.shape == (2, 6, 6)
    assert torch.allclose(m.confidence_src.reshape(2, 36), torch.softmax(flat, -1).max(-1).values)


def test_identity_consensus_recovers_a_mirrored_image():
    model = build_ncnet(backbone_weights="random", ncons_kernel_sizes=[3], ncons_channels=[1])
    conv = model.refine.neigh_consensus.conv[0]
    with torch.no_grad():  # Dirac kernel: consensus = relu(C) + relu(Cᵀ)ᵀ = 2 relu(C)
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1, 1, 1] = 1.0
        conv.bias.zero_()
    fa = _features(1, h=6, w=7, seed=3)
    fb = fa.flip(-1)  # the target is the source mirrored left-right
    m = model.head({"features.13": fa}, {"features.13": fb})
    grid = cell_grid(6, 7)
    mirrored = torch.stack([-grid[..., 0], grid[..., 1]], -1)
    assert torch.allclose(m.src_to_trg[0], mirrored, atol=1e-6)
    assert torch.allclose(m.trg_to_src[0], mirrored, atol=1e-6)


def test_any_image_size_runs_through_the_backbone():
    model = build_ncnet(**TINY)  # MobileNetV2 with its offline weights
    for size in (64, 96):
        with torch.no_grad():
            m = model(torch.randn(1, 3, size, size), torch.randn(1, 3, size, size + 32))
        n = size // 16
        assert m.corr.shape == (1, n, n, n, n + 2)


def test_options_config_and_defaults():
    model = build_ncnet(backbone_weights="random", **TINY)
    cfg = model.config()
    assert cfg["model"] == "ncnet" and cfg["layer"] == "features.13"
    again = build_ncnet(**{k: v for k, v in cfg.items() if k != "model"})
    assert again.config() == cfg
    assert model.train_data == "weak"
    assert model.train_defaults["lr"] == 5e-4 and model.train_defaults["batch_size"] == 16
    assert model.input_size == 400
    with pytest.raises(UsageError):
        build_ncnet(backbone_weights="random", ncons_size=3)
    with pytest.raises(WeightsError, match="no ncnet weights are shipped for backbone resnet50"):
        build_ncnet("resnet50", backbone_weights="random", weights="default")
    # fine-tuning the last block makes exactly that block trainable
    ft = build_ncnet(backbone_weights="random", finetune_blocks=1, **TINY)
    trainable = {n.split(".")[1] for n, p in ft.backbone.named_parameters() if p.requires_grad}
    assert trainable == {"13"}
    ft.train()
    assert ft.refine.training and not ft.backbone.training


# ----------------------------------------------------------------------------- weak loss


def test_matching_score_extremes_and_loss_combination():
    flat = torch.zeros(1, 2, 3, 4, 5)
    assert matching_score(flat).item() == pytest.approx(0.5 * (1 / 20 + 1 / 6))
    n = 4
    sharp = 50.0 * torch.eye(n).view(1, 2, 2, 2, 2)
    assert matching_score(sharp).item() == pytest.approx(1.0, abs=1e-6)
    pos = {"a": torch.tensor([0.5, 0.7]), "b": torch.tensor([0.2, 0.2])}
    neg = {"a": torch.tensor([0.1, 0.1]), "b": torch.tensor([0.3, 0.1])}
    loss, logs = weak_loss(pos, neg, {"a": 1.0, "b": 2.0})
    assert loss.item() == pytest.approx((0.1 - 0.6) + 2.0 * (0.2 - 0.2))
    assert logs["a_pos"] == pytest.approx(0.6) and logs["loss"] == pytest.approx(loss.item())


def test_model_loss_uses_rolled_targets_as_negatives():
    model = build_ncnet(**TINY)
    randomize(model.refine, 2)
    g = torch.Generator().manual_seed(0)
    src, trg = torch.randn(3, 3, 64, 64, generator=g), torch.randn(3, 3, 64, 64, generator=g)
    loss, logs = model.loss({"src_image": src, "trg_image": trg})
    with torch.no_grad():
        pos = matching_score(model(src, trg).corr).mean()
        neg = matching_score(model(src, trg.roll(1, 0)).corr).mean()
    assert loss.item() == pytest.approx((neg - pos).item(), abs=1e-6)
    assert logs["ncnet_pos"] == pytest.approx(pos.item(), abs=1e-6)
    loss.backward()
    assert all(p.grad is not None for p in model.refine.parameters())


# ----------------------------------------------------------------------------- checkpoints


def test_project_checkpoint_round_trip(tmp_path):
    model = build_ncnet(backbone_weights="random", **TINY)
    randomize(model.refine, 3)
    path = tmp_path / "nc.safetensors"
    save_checkpoint(path, model.head_state_dict(), {"config": model.config()})
    assert not any(k.startswith("backbone.") for k in model.head_state_dict())
    loaded = build_ncnet(backbone_weights="random", weights=path)  # options come from the sidecar
    assert loaded.config() == model.config() and loaded.weights_id.startswith("file:nc.safetensors:")
    fa, fb = {"features.13": _features(seed=4)}, {"features.13": _features(seed=5)}
    assert torch.equal(loaded.head(fa, fb).corr, model.head(fa, fb).corr)
    with pytest.raises(WeightsError, match="trained with ncons_channels"):
        build_ncnet(backbone_weights="random", weights=path, ncons_channels=[8, 1])


def test_official_ncnet_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    nc_weights = [torch.randn(16, 1, 5, 5, 5, 5) * 0.01, torch.randn(16, 16, 5, 5, 5, 5) * 0.01, torch.randn(1, 16, 5, 5, 5, 5) * 0.01]
    state = resnet_lookalike_features("resnet101", seed=1)
    for i, w in zip((0, 2, 4), nc_weights):
        state[f"NeighConsensus.conv.{i}.weight"] = conv4d_weight_to_official(w)  # stored (k1, out, in, k2, k3, k4)
        state[f"NeighConsensus.conv.{i}.bias"] = torch.rand(w.shape[0]) * 0.1
    args = argparse.Namespace(ncons_kernel_sizes=[5, 5, 5], ncons_channels=[16, 16, 1], lr=5e-4, image_size=400)
    path = tmp_path / "ncnet_pfpascal.pth.tar"
    ckpt = {"epoch": 5, "args": args, "state_dict": state, "best_test_loss": np.float64(-0.6), "train_loss": np.zeros(5)}
    torch.save(ckpt, path, _use_new_zipfile_serialization=False)  # 2018 files use the legacy format

    model = build_ncnet(backbone="resnet101", weights=path)
    assert model.config()["layer"] == "layer3" and model.ncons_channels == [16, 16, 1]
    assert model.weights_id.startswith("released-file:ncnet_pfpascal.pth.tar:")
    for i, w in zip((0, 2, 4), nc_weights):
        assert torch.equal(model.refine.neigh_consensus.conv[i].weight, w)
        assert torch.equal(model.refine.neigh_consensus.conv[i].bias, state[f"NeighConsensus.conv.{i}.bias"])
    bb = model.backbone.state_dict()
    assert torch.equal(bb["stages.0.0.weight"], state["FeatureExtraction.model.0.weight"])
    last = model.backbone.stage_names.index("layer3.22")
    assert torch.equal(bb[f"stages.{last}.bn3.running_var"], state["FeatureExtraction.model.6.22.bn3.running_var"])
    # the head computes the public pipeline with the un-permuted weights
    fa, fb = {"layer3": _features(c=1024, h=5, w=5, seed=6)}, {"layer3": _features(c=1024, h=5, w=5, seed=7)}
    x = mutual_matching(correlation_4d(l2_normalize(fa["layer3"]), l2_normalize(fb["layer3"]))).unsqueeze(1)

    def stack(t):
        for i, w in zip((0, 2, 4), nc_weights):
            t = torch.relu(conv4d_reference(t, w, state[f"NeighConsensus.conv.{i}.bias"]))
        return t

    expected = mutual_matching((stack(x) + transpose_6d(stack(transpose_6d(x)))).squeeze(1))
    assert torch.allclose(model.head(fa, fb).corr, expected, atol=1e-6)
    # converted to a project checkpoint, the backbone travels with the head
    assert any(k.startswith("backbone.") for k in model.head_state_dict())
    with pytest.raises(WeightsError, match="use backbone resnet101"):
        build_ncnet(weights=path)


class Payload:
    """Unpickling this would create a file: a safe loader must refuse it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_with_another_pickled_class_is_refused(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": {"NeighConsensus.conv.0.weight": torch.zeros(1)}, "args": Payload(str(marker))}, path)
    with pytest.raises(WeightsError, match="refused"):
        build_ncnet(backbone="resnet101", weights=path)
    assert not marker.exists()
    plain = tmp_path / "plain.pth.tar"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "args": pathlib.PurePosixPath("/etc")}, plain)
    with pytest.raises(WeightsError, match="refused"):
        build_ncnet(backbone="resnet101", weights=plain)


# ----------------------------------------------------------------------------- hypercolumn features

HYPER = "features.6,features.10,features.13,features.16"


def test_hypercolumn_features_sit_on_the_feature_layer_grid():
    from semcorr.correlation import hypercolumn

    model = build_ncnet(hypercolumn=HYPER, center=True, **TINY)  # the offline ImageNet MobileNetV2
    assert model.required_layers == ["features.13", "features.6", "features.10", "features.16"]
    assert model.feature_channels == 32 + 64 + 96 + 160
    torch.manual_seed(0)
    feats = model.features(torch.randn(1, 3, 96, 128))
    got = model.layer_features(feats)
    assert got.shape == (1, 352, 6, 8)  # the stride-16 grid of features.13, not features.6's 12 x 16
    names = HYPER.split(",")
    assert torch.equal(got, hypercolumn([feats[n] for n in names], size=(6, 8), center=True))
    # unit norm per cell; each layer part carries 1/4 of the squared norm, and is centred
    assert torch.allclose(got.norm(dim=1), torch.ones(1, 6, 8), atol=1e-5)
    part = got[:, :32]
    assert torch.allclose((part**2).sum(1), torch.full((1, 6, 8), 0.25), atol=1e-5)
    with pytest.raises(UsageError, match="needs backbone features 'features.6'"):
        model.layer_features({"features.13": feats["features.13"]})


def test_centering_without_hypercolumn_and_published_default():
    plain = build_ncnet(backbone_weights="random", **TINY)
    assert plain.config()["hypercolumn"] == [] and plain.config()["center"] is False
    assert plain.required_layers == ["features.13"]
    centred = build_ncnet(backbone_weights="random", center=True, **TINY)
    f = _features(seed=2)
    out = centred.layer_features({"features.13": f})
    assert torch.allclose(out.mean(dim=(2, 3)), torch.zeros(1, f.shape[1]), atol=1e-6)
    assert torch.equal(plain.layer_features({"features.13": f}), f)


def test_hypercolumn_options_round_trip_through_a_checkpoint(tmp_path):
    model = build_ncnet(backbone_weights="random", hypercolumn=HYPER, center=True, **TINY)
    randomize(model.refine, 7)
    path = tmp_path / "hc.safetensors"
    save_checkpoint(path, model.head_state_dict(), {"config": model.config()})
    loaded = build_ncnet(backbone_weights="random", weights=path)
    assert loaded.config() == model.config()
    assert loaded.required_layers == model.required_layers
    with pytest.raises(WeightsError, match="trained with center"):
        build_ncnet(backbone_weights="random", weights=path, center=False)
