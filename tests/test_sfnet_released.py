"""The authors' released SFNet checkpoint: safe loading, ResNet-101 only, conversion.

The real ``best_checkpoint.pt`` is not available here, so each test writes a
look-alike with ``torch.save``: ``{'state_dict1': <adap_layer_feat3>,
'state_dict2': <adap_layer_feat4>}`` with the public code's key names and
ResNet-101 shapes. Conv weights are stored as stride-0 expansions of one
value per output channel, so the file stays small while every tensor has its
real shape and a recognisable content.
"""

from __future__ import annotations

import json
import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from semcorr.errors import WeightsError
from semcorr.models.pretrained import convert_released
from semcorr.models.sfnet import build_sfnet, released_state_dict
from semcorr.weights import sidecar_path


def adaptation_state(channels: int, k: int, seed: int, prefix: str = "") -> OrderedDict:
    """One adaptation layer's state_dict as the public code names it (conv1/conv2 × Conv2d, BatchNorm2d)."""
    g = torch.Generator().manual_seed(seed)
    sd = OrderedDict()
    for block in ("conv1", "conv2"):
        per_out = torch.randn(channels, generator=g) * 1e-3
        sd[f"{prefix}{block}.0.weight"] = per_out.view(channels, 1, 1, 1).expand(channels, channels, k, k)
        sd[f"{prefix}{block}.0.bias"] = 0.1 * torch.randn(channels, generator=g)
        sd[f"{prefix}{block}.1.weight"] = 1 + 0.1 * torch.randn(channels, generator=g)
        sd[f"{prefix}{block}.1.bias"] = 0.1 * torch.randn(channels, generator=g)
        sd[f"{prefix}{block}.1.running_mean"] = 0.1 * torch.randn(channels, generator=g)
        sd[f"{prefix}{block}.1.running_var"] = 1 + torch.rand(channels, generator=g)
        sd[f"{prefix}{block}.1.num_batches_tracked"] = torch.tensor(12345)
    return sd


@pytest.fixture(scope="module")
def released_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sfnet") / "best_checkpoint.pt"
    torch.save({"state_dict1": adaptation_state(1024, 5, 0), "state_dict2": adaptation_state(2048, 3, 1)}, path)
    return path


@pytest.fixture(scope="module")
def released_model(released_file):
    return build_sfnet(backbone_weights="random", weights=released_file)


def test_released_checkpoint_loads_on_resnet101_with_every_tensor_in_place(released_file, released_model):
    assert released_model.backbone.name == "resnet101"
    assert released_model.required_layers == ["layer3", "layer4"]
    raw = torch.load(released_file, weights_only=True)
    for key, layer in (("state_dict1", released_model.adap_layer_feat3), ("state_dict2", released_model.adap_layer_feat4)):
        own = layer.state_dict()
        assert set(own) == set(raw[key])
        for name, value in raw[key].items():
            assert torch.equal(own[name], value), name
    assert released_model.adap_layer_feat3.conv2[0].weight.shape == (1024, 1024, 5, 5)
    assert released_model.adap_layer_feat4.conv1[0].weight.shape == (2048, 2048, 3, 3)
    assert not released_model.training
    assert released_model.weights_id.startswith("released-file:best_checkpoint.pt:")


def test_random_resnet101_shapes_at_a_small_size(released_model):
    torch.manual_seed(0)
    with torch.no_grad():
        m = released_model(torch.randn(1, 3, 64, 64), torch.randn(1, 3, 96, 64))
    # layer3 is stride 16: 4x4 and 6x4 grids; layer4 (2x2, 3x2) is upsampled onto them.
    assert m.src_to_trg.shape == (1, 4, 4, 2) and m.trg_to_src.shape == (1, 6, 4, 2)
    assert m.corr.shape == (1, 4, 4, 6, 4)
    assert torch.isfinite(m.src_to_trg).all() and torch.isfinite(m.trg_to_src).all()


def test_released_checkpoint_refuses_another_backbone(released_file):
    with pytest.raises(WeightsError, match="resnet101"):
        build_sfnet(backbone="mobilenet_v2", weights=released_file)


def test_dataparallel_prefix_and_missing_batch_counters_are_accepted():
    sd1 = adaptation_state(4, 5, 0, prefix="module.")
    sd2 = adaptation_state(8, 3, 1)
    for k in [k for k in sd2 if k.endswith("num_batches_tracked")]:
        del sd2[k]
    state = released_state_dict({"state_dict1": sd1, "state_dict2": sd2})
    assert "adap_layer_feat3.conv1.0.weight" in state and "adap_layer_feat4.conv2.1.running_var" in state
    assert state["adap_layer_feat4.conv1.1.num_batches_tracked"].item() == 0
    assert state["adap_layer_feat3.conv2.1.num_batches_tracked"].item() == 12345
    assert len(state) == 28


def test_a_file_of_the_wrong_shape_or_format_is_refused(tmp_path):
    small = tmp_path / "small.pt"
    torch.save({"state_dict1": adaptation_state(96, 5, 0), "state_dict2": adaptation_state(320, 3, 1)}, small)
    with pytest.raises(WeightsError, match="adap_layer_feat3.conv1.0.weight' has shape"):
        build_sfnet(backbone_weights="random", weights=small)
    other = tmp_path / "other.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, other)
    with pytest.raises(WeightsError, match="state_dict1"):
        build_sfnet(backbone_weights="random", weights=other)
    with pytest.raises(WeightsError, match="does not exist"):
        build_sfnet(weights=tmp_path / "missing.pt")


class _Payload:
    """Unpickling this would create a file: it must never happen."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickle_with_code_is_never_executed(tmp_path):
    marker = tmp_path / "executed"
    evil = tmp_path / "best_checkpoint.pt"
    with open(evil, "wb") as f:
        pickle.dump({"state_dict1": _Payload(str(marker)), "state_dict2": {}}, f, protocol=2)
    with pytest.raises(WeightsError, match="weights only"):
        build_sfnet(backbone_weights="random", weights=evil)
    assert not marker.exists()


def test_conversion_to_the_project_format_round_trips(released_file, released_model, tmp_path):
    out = tmp_path / "sfnet_resnet101.safetensors"
    convert_released(released_file, out, "sfnet")
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["config"] == {"model": "sfnet", "backbone": "resnet101", "backbone_weights": "default",
                              "beta": 50.0, "kernel_sigma": 5.0}
    assert meta["converted_from"] == "best_checkpoint.pt"
    # The backbone is read from the sidecar; weights must be identical to the direct load.
    converted = build_sfnet(backbone_weights="random", weights=out)
    assert converted.backbone.name == "resnet101"
    own, ref = converted.head_state_dict(), released_model.head_state_dict()
    assert set(own) == set(ref) and all(torch.equal(own[k], ref[k]) for k in ref)
