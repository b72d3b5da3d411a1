"""The MMNet model: shapes, output level, chunking, config, training hooks, checkpoints."""

from __future__ import annotations


import pytest
import torch

from semcorr.backbones import block_layers
from semcorr.errors import WeightsError
from semcorr.flow import argmax_matches
from semcorr.models import build_model
from semcorr.models.base import Matches
from semcorr.models.mmnet import MMNet, build_mmnet


@pytest.fixture(scope="module")
def mobilenet_model() -> MMNet:
    torch.manual_seed(0)
    return build_mmnet("mobilenet_v2")


@pytest.fixture(scope="module")
def resnet_model() -> MMNet:
    torch.manual_seed(0)
    return build_mmnet("resnet101", "random")


def images(b, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, h, w, generator=g), torch.randn(b, 3, w, h, generator=g)


@pytest.mark.parametrize("batch,size", [(2, (96, 128)), (1, (80, 48))])
def test_mobilenet_forward_shapes(mobilenet_model, batch, size):
    h, w = size
    a, b = images(batch, h, w)
    with torch.no_grad():
        out = mobilenet_model(a, b)
    assert isinstance(out, Matches)
    ga, gb = (h // 8, w // 8), (w // 8, h // 8)  # output level 1 = stride 8
    assert out.src_to_trg.shape == (batch, *ga, 2) and out.trg_to_src.shape == (batch, *gb, 2)
    assert out.corr.shape == (batch, *ga, *gb)
    assert out.src_to_trg.abs().max() <= 1 and out.trg_to_src.abs().max() <= 1
    torch.testing.assert_close(out.src_to_trg, argmax_matches(out.corr))
    torch.testing.assert_close(out.confidence_src, out.corr.flatten(3).max(-1).values)


def test_mobilenet_layout(mobilenet_model):
    m = mobilenet_model
    assert m.required_layers == [layer for stage in block_layers("mobilenet_v2") for layer in stage]
    assert m.strides == [4, 8, 16, 32]
    with torch.no_grad():
        maps_a, _ = m.encode_images(*images(1, 96, 64))
    assert [tuple(x.shape) for x in maps_a] == [(1, 21, 24, 16), (1, 21, 12, 8), (1, 21, 6, 4), (1, 21, 3, 2)]


def test_resnet101_every_block_tiny(resnet_model):
    m = resnet_model
    assert len(m.required_layers) == 33 and [len(s) for s in m.stages] == [3, 4, 23, 3]
    assert [len(e.blocks) for e in m.encoder.enhance] == [3, 4, 23, 3]
    assert m.strides == [4, 8, 16, 32]
    a, b = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 96)  # two input sizes in one pair
    with torch.no_grad():
        maps_a, maps_b = m.encode_images(a, b)
        out = m.match_maps(maps_a, maps_b)
    assert [tuple(x.shape[-2:]) for x in maps_a] == [(64 // s, 64 // s) for s in (4, 8, 16, 32)]
    assert [tuple(x.shape[-2:]) for x in maps_b] == [(64 // s, 96 // s) for s in (4, 8, 16, 32)]
    assert out.corr.shape == (1, 8, 8, 8, 12) and out.trg_to_src.shape == (1, 8, 12, 2)


def test_output_volume_is_the_coarse_to_fine_level(mobilenet_model):
    m = mobilenet_model
    a, b = images(1, 96, 96, seed=3)
    with torch.no_grad():
        maps_a, maps_b = m.encode_images(a, b)
        vols = m.volumes(maps_a, maps_b)
        out = m.match_maps(maps_a, maps_b)
    torch.testing.assert_close(out.corr, vols[1])
    from semcorr.correlation import correlation_4d
    from semcorr.mmnet_multiscale import upsample_4d

    torch.testing.assert_close(vols[1], correlation_4d(maps_a[1], maps_b[1]) + upsample_4d(vols[2], (12, 12), (12, 12)))


def test_chunked_matching_equals_the_full_volume(mobilenet_model):
    m = mobilenet_model
    a, b = images(1, 64, 96, seed=1)
    with torch.no_grad():
        maps_a, maps_b = m.encode_images(a, b)
        for level in (0, 1):
            m.output_level = level
            full = m.match_maps(maps_a, maps_b)
            m.max_volume = 1
            chunked = m.match_maps(maps_a, maps_b)
            m.max_volume = 1 << 25
            assert chunked.corr is None
            for name in ("src_to_trg", "trg_to_src", "confidence_src", "confidence_trg"):
                torch.testing.assert_close(getattr(chunked, name), getattr(full, name))
    m.output_level = 1


def test_options_change_the_result():
    torch.manual_seed(0)
    nearest = build_mmnet("mobilenet_v2")
    bicubic = build_mmnet("mobilenet_v2", upsample="bicubic")
    fine = build_mmnet("mobilenet_v2", output_level=0, matching="kernel-soft-argmax")
    bicubic.load_state_dict(nearest.state_dict())
    fine.load_state_dict(nearest.state_dict())
    a, b = images(1, 64, 64, seed=2)
    with torch.no_grad():
        n, c, f = nearest(a, b), bicubic(a, b), fine(a, b)
    assert n.corr.shape == c.corr.shape and not torch.allclose(n.corr, c.corr)
    assert f.src_to_trg.shape == (1, 16, 16, 2)
    with pytest.raises(Exception, match="upsampling"):
        build_mmnet("mobilenet_v2", upsample="linear")
    with pytest.raises(Exception, match="output_level"):
        build_mmnet("mobilenet_v2", output_level=4)


def test_config_rebuilds_the_same_model(mobilenet_model):
    cfg = mobilenet_model.config()
    assert cfg == {
        "model": "mmnet",
        "backbone": "mobilenet_v2",
        "backbone_weights": "default",
        "upsample": "nearest",
        "output_level": 1,
        "matching": "argmax",
        "train_backbone": True,
        "supervision": "keypoints",
        "pseudo_points": 32,
        "teacher": "nn",
    }
    again = build_model(cfg["model"], **{k: v for k, v in cfg.items() if k != "model"})
    assert again.config() == cfg


def test_shipped_weights_are_reported_missing():
    with pytest.raises(WeightsError, match="no mmnet weights are shipped for backbone resnet50"):
        build_mmnet("resnet50", backbone_weights="random", weights="default")
    with pytest.raises(WeightsError, match="does not exist"):
        build_mmnet("mobilenet_v2", weights="/nonexistent/mmnet.pth")


def test_training_hooks(mobilenet_model):
    m = mobilenet_model
    assert MMNet.train_data == "keypoints"
    d = MMNet.train_defaults
    assert (d["optimizer"], d["lr"], d["momentum"], d["weight_decay"], d["batch_size"]) == ("sgd", 5e-4, 0.9, 2e-4, 5)
    assert d["lr_schedule"] == {"type": "step", "step_size": 10000, "gamma": 0.1, "unit": "iteration"}
    groups = m.param_groups(5e-4)
    assert [g["name"] for g in groups] == ["head", "backbone"]
    assert groups[1]["lr"] == pytest.approx(5e-6)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in m.parameters()) and len(ids) == len(set(ids))
    m.train()
    assert m.encoder.training and not m.backbone.training  # BatchNorm statistics stay fixed
    m.eval()
    frozen = build_mmnet("mobilenet_v2", train_backbone=False)
    assert [g["name"] for g in frozen.param_groups(1.0)] == ["head"]
    assert not any(k.startswith("backbone.") for k in frozen.head_state_dict())
    assert any(k.startswith("backbone.") for k in m.head_state_dict())


# ----------------------------------------------------------------------------- checkpoints
