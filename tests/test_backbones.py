"""Backbones: offline MobileNetV2 weights, layer names, strides, refusals."""

import pytest
import torch

from semcorr.backbones import (
    MOBILENET_V2_DEEPSORT,
    block_layers,
    build_backbone,
    layer_table,
    remap_deepsort_mobilenet,
)
from semcorr.errors import UsageError, WeightsError
from semcorr.weights import load_state_dict_file, sha256_file


def test_offline_mobilenet_file_is_the_published_one():
    path = MOBILENET_V2_DEEPSORT.verify()
    assert path.stat().st_size == 9_084_095
    assert sha256_file(path) == MOBILENET_V2_DEEPSORT.sha256


def test_remapped_keys_load_strictly_into_torchvision():
    import torchvision

    state = remap_deepsort_mobilenet(load_state_dict_file(MOBILENET_V2_DEEPSORT.path()))
    net = torchvision.models.mobilenet_v2(weights=None).features
    net.load_state_dict(state, strict=True)  # raises on any mismatch
    assert "1.conv.0.0.weight" in state and "1.conv.2.weight" in state
    assert "5.conv.1.1.bias" in state and "5.conv.3.running_var" in state
    assert "18.0.weight" in state


def test_remap_examples_by_hand():
    t = torch.zeros(1)
    out = remap_deepsort_mobilenet(
        {"features.0.0.weight": t, "features.1.conv.3.weight": t, "features.7.conv.6.weight": t, "features.7.conv.4.bias": t}
    )
    assert set(out) == {"0.0.weight", "1.conv.1.weight", "7.conv.2.weight", "7.conv.1.1.bias"}


def test_mobilenet_layers_shapes_and_strides(mobilenet):
    x = torch.randn(1, 3, 160, 128)
    out = mobilenet(x, ["features.6", "features.13", "features.17"])
    assert out["features.6"].shape == (1, 32, 20, 16)
    assert out["features.13"].shape == (1, 96, 10, 8)
    assert out["features.17"].shape == (1, 320, 5, 4)
    assert mobilenet.stride("features.13") == 16
    assert not any(p.requires_grad for p in mobilenet.parameters())


def test_pretrained_features_differ_from_random(mobilenet):
    x = torch.randn(1, 3, 64, 64)
    rand = build_backbone("mobilenet_v2", "random")
    a = mobilenet(x, ["features.4"])["features.4"]
    b = rand(x, ["features.4"])["features.4"]
    assert not torch.allclose(a, b)


def test_resnet_random_blocks_and_stage_alias():
    net = build_backbone("resnet50", "random")
    x = torch.randn(1, 3, 64, 64)
    out = net(x, ["layer3", "layer3.5", "layer2.0", "layer4"])
    assert torch.equal(out["layer3"], out["layer3.5"])  # the stage is its last block
    assert out["layer2.0"].shape == (1, 512, 8, 8)
    assert out["layer4"].shape == (1, 2048, 2, 2)
    assert len(layer_table("resnet101")) == 33 + 4
    assert [len(g) for g in block_layers("resnet101")] == [3, 4, 23, 3]


def test_resnet_weights_file_round_trip(tmp_path):
    import torchvision
    from safetensors.torch import save_file

    ref = torchvision.models.resnet50(weights=None)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "r50.safetensors"))
    torch.save(ref.state_dict(), tmp_path / "r50.pth")
    x = torch.randn(1, 3, 64, 64)
    ref.eval()
    expected = ref.layer1(ref.maxpool(ref.relu(ref.bn1(ref.conv1(x)))))
    for name in ("r50.safetensors", "r50.pth"):
        net = build_backbone("resnet50", tmp_path / name)
        assert torch.allclose(net(x, ["layer1"])["layer1"], expected, atol=1e-6)


def test_resnet_without_offline_weights_says_how_to_supply_them(monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.models, "resnet101", offline)
    with pytest.raises(WeightsError, match="backbone_weights FILE") as err:
        build_backbone("resnet101")
    from semcorr_cli.common import flag_for

    assert "pass it with --backbone-weights FILE (or use --backbone-weights random)" in err.value.render(flag_for)


def test_unknown_backbone_and_layer():
    with pytest.raises(UsageError, match="unknown backbone"):
        build_backbone("vgg16")
    net = build_backbone("mobilenet_v2", "random")
    with pytest.raises(UsageError, match="no layer 'layer3'"):
        net(torch.randn(1, 3, 32, 32), ["layer3"])


def test_pickled_object_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"weight": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="weights only"):
        load_state_dict_file(tmp_path / "evil.pth")


def test_loading_the_stages_does_not_import_torchvision():
    # torchvision's package init pulls torch._dynamo (seconds of start-up); stages that never build
    # a backbone (correlate, flow on correlations, warp, evaluate --flows) must not pay for it.
    import subprocess
    import sys

    stages = ", ".join(f"semcorr.pipeline.{m}" for m in ("extract", "correlate", "refine", "flow", "heatmaps", "warping", "summary", "predictors"))
    code = f"import sys, {stages}, semcorr.io.stream, semcorr.evaluate, semcorr.flow, semcorr.warp; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
