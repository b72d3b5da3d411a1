"""SFNet on MobileNetV2: shapes, gradients, published protocol, training and checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import CALTECH
from semcorr.errors import WeightsError
from semcorr.flow import matches_to_flow
from semcorr.geometry import cell_grid
from semcorr.images import image_to_float, image_to_tensor, load_image, normalize_imagenet
from semcorr.models import build_model
from semcorr.models.sfnet import (
    SFNet,
    build_sfnet,
    crop_and_rescale_grid,
    published_input,
    sfnet_published_flow,
)
from semcorr.pipeline.predictors import ModelPredictor, SFNetPublishedPredictor, build_predictor
from semcorr.protocols import get_protocol
from semcorr.weights import save_checkpoint

IMAGES = ["accordion/image_0001.jpg", "Leopards/image_0001.jpg", "airplanes/image_0001.jpg"]


@pytest.fixture(scope="module")
def model() -> SFNet:
    torch.manual_seed(0)
    return build_sfnet()


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [load_image(CALTECH / name) for name in IMAGES]


def test_builder_is_registered_and_uses_the_documented_layers(model):
    assert isinstance(build_model("sfnet", beta=None), SFNet)
    assert model.required_layers == ["features.13", "features.17"]
    assert model.adap_layer_feat3.conv1[0].weight.shape == (96, 96, 5, 5)
    assert model.adap_layer_feat4.conv1[0].weight.shape == (320, 320, 3, 3)
    assert model.input_size == 320 and model.train_data == "synthetic"
    d = SFNet.train_defaults
    assert (d["optimizer"], d["lr"], d["betas"], d["batch_size"], d["epochs"], d["image_size"]) == (
        "adam", 3e-5, (0.9, 0.999), 16, 40, 320)
    assert d["lr_schedule"] == {"type": "step", "milestones": [30], "gamma": 0.2, "unit": "epoch"}


def test_config_rebuilds_the_same_architecture(model):
    cfg = model.config()
    assert cfg == {"model": "sfnet", "backbone": "mobilenet_v2", "backbone_weights": "default",
                   "beta": 50.0, "kernel_sigma": 5.0}
    again = build_sfnet(**{k: v for k, v in cfg.items() if k != "model"})
    assert again.config() == cfg
    assert build_sfnet(backbone_weights="random", beta=None, kernel_sigma=3.0).config()["beta"] is None


@pytest.mark.parametrize("size_src,size_trg,grid_src,grid_trg", [
    ((320, 320), (320, 320), (20, 20), (20, 20)),
    ((128, 96), (96, 160), (8, 6), (6, 10)),
])
def test_shapes_and_flow_at_the_original_resolution(model, size_src, size_trg, grid_src, grid_trg):
    torch.manual_seed(0)
    bsz = 2 if size_src[0] < 320 else 1
    a, b = torch.randn(bsz, 3, *size_src), torch.randn(bsz, 3, *size_trg)
    with torch.no_grad():
        m = model(a, b)
    assert m.src_to_trg.shape == (bsz, *grid_src, 2)
    assert m.trg_to_src.shape == (bsz, *grid_trg, 2)
    assert m.corr.shape == (bsz, *grid_src, *grid_trg)
    assert m.confidence_src.shape == (bsz, *grid_src) and m.confidence_trg.shape == (bsz, *grid_trg)
    assert m.src_to_trg.abs().max() <= 1 + 1e-6 and m.trg_to_src.abs().max() <= 1 + 1e-6
    flow = matches_to_flow(m.src_to_trg, size_src, size_trg)
    assert flow.shape == (bsz, *size_src, 2)
    assert flow[..., 0].min() >= -1e-4 and flow[..., 0].max() <= size_trg[1] - 1 + 1e-4


def test_identical_images_match_every_cell_to_itself_with_argmax(model, photos):
    x = image_to_tensor(photos[0], 160)
    argmax_model = build_sfnet(beta=None)
    argmax_model.load_state_dict(model.state_dict())
    with torch.no_grad():
        m = argmax_model(x, x)
    assert torch.equal(m.src_to_trg[0], cell_grid(10, 10))
    assert torch.equal(m.trg_to_src[0], cell_grid(10, 10))


def test_gradients_reach_the_adaptation_layers_and_not_the_backbone():
    torch.manual_seed(0)
    net = build_sfnet().train()
    assert not net.backbone.training  # frozen backbone keeps its batch-norm statistics
    bn_before = net.backbone.stages[1].conv[0][1].running_mean.clone()
    img = torch.randn(2, 3, 96, 96)
    mask = torch.ones(2, 1, 96, 96)
    loss, logs = net.loss({"src_image": img, "trg_image": img.flip(-1), "src_mask": mask, "trg_mask": mask})
    loss.backward()
    for layer in (net.adap_layer_feat3, net.adap_layer_feat4):
        for block in (layer.conv1, layer.conv2):
            assert block[0].weight.grad is not None and block[0].weight.grad.abs().sum() > 0
            assert block[1].weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in net.backbone.parameters())
    assert torch.equal(net.backbone.stages[1].conv[0][1].running_mean, bn_before)
    assert set(logs) == {"loss", "mask", "flow", "smooth"} and logs["loss"] == pytest.approx(loss.item())


def test_loss_asks_for_the_synthetic_batch_keys(model):
    with pytest.raises(ValueError, match="src_mask"):
        model.loss({"src_image": torch.zeros(1, 3, 64, 64), "trg_image": torch.zeros(1, 3, 64, 64)})


def test_default_weights_exist_only_for_the_offline_backbone():
    assert build_sfnet(weights="default").weights_id  # shipped for mobilenet_v2
    with pytest.raises(WeightsError, match="no sfnet weights are shipped for backbone resnet50; pass weights FILE"):
        build_sfnet(backbone="resnet50", backbone_weights="random", weights="default")


# ----------------------------------------------------------------------------- published protocol


def test_published_input_resizes_to_288_and_pads_16_black_pixels(photos):
    x = published_input(photos[1])
    assert x.shape == (1, 3, 320, 320)
    black = image_to_tensor(Image.new("RGB", (1, 1)))[0, :, 0, 0]
    border = torch.cat([x[0, :, :16].flatten(1), x[0, :, -16:].flatten(1), x[0, :, :, :16].flatten(1),
                        x[0, :, :, -16:].flatten(1)], dim=1)
    assert torch.allclose(border, black[:, None].expand_as(border), atol=1e-6)
    assert torch.allclose(x[:, :, 16:-16, 16:-16], image_to_tensor(photos[1], 288), atol=1e-6)


def test_crop_and_rescale_grid_hand_computed():
    grid = cell_grid(20, 20).unsqueeze(0)
    out = crop_and_rescale_grid(grid)
    assert out.shape == (1, 18, 18, 2)
    assert out[0, 0, 0, 0].item() == pytest.approx((-1 + 2 / 19) * 10 / 9, abs=1e-6)
    assert out[0, 5, 17, 1].item() == pytest.approx((-1 + 2 * 6 / 19) * 10 / 9, abs=1e-6)
    odd = crop_and_rescale_grid(torch.ones(1, 7, 9, 2))  # y: 3/2, x: 4/3
    assert odd.shape == (1, 5, 7, 2) and odd[0, 0, 0].tolist() == pytest.approx([4 / 3, 3 / 2])


def test_published_flow_of_an_identical_pair_is_the_cropped_identity(model, photos):
    # With argmax matching every cell of an identical pair matches itself, so the
    # protocol's flow is the identity shrunk by 170/171 around the image centre:
    # crop 20 → 18 cells, stretch by 10/9, upsample to the image with align_corners.
    argmax_model = build_sfnet(beta=None)
    argmax_model.load_state_dict(model.state_dict())
    img = photos[0]
    w, h = img.size
    flow_s2t, flow_t2s = sfnet_published_flow(argmax_model, img, img)
    assert flow_s2t.shape == flow_t2s.shape == (1, h, w, 2)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    ex = cx + (170 / 171) * (torch.arange(w, dtype=torch.float32) - cx)
    ey = cy + (170 / 171) * (torch.arange(h, dtype=torch.float32) - cy)
    for flow in (flow_s2t, flow_t2s):
        assert torch.allclose(flow[0, :, :, 0], ex[None, :].expand(h, w), atol=1e-3)
        assert torch.allclose(flow[0, :, :, 1], ey[:, None].expand(h, w), atol=1e-3)


def test_published_flow_shapes_follow_the_original_images_and_keep_the_mode(model, photos):
    src, trg = photos[1].resize((150, 110)), photos[2].resize((90, 130))
    model.train()
    flow_s2t, flow_t2s = sfnet_published_flow(model, src, trg)
    assert model.training and not model.backbone.training
    model.eval()
    assert flow_s2t.shape == (1, 110, 150, 2) and flow_t2s.shape == (1, 130, 90, 2)
    # Pixel coordinates of the other image (the rescaled grid may overshoot by < 1/9 of the half-size).
    assert flow_s2t[..., 0].abs().max() <= 90 * 1.2 and flow_t2s[..., 1].abs().max() <= 110 * 1.2
    assert torch.isfinite(flow_s2t).all() and torch.isfinite(flow_t2s).all()
    # The predictor wrapper returns the same flows as numpy arrays for the evaluation engine.
    predictor = SFNetPublishedPredictor(model)
    np_s2t, np_t2s = predictor.predict(src, trg)
    assert np_s2t.dtype.name == "float32" and np_s2t.shape == (110, 150, 2) and np_t2s.shape == (130, 90, 2)
    assert (np_s2t == flow_s2t[0].numpy()).all() and (np_t2s == flow_t2s[0].numpy()).all()
    assert predictor.describe()["weights"] == "fresh" and predictor.describe()["model"] == "sfnet"


def test_sfnet_presets_run_sfnet_on_its_published_test_input():
    # eval_pascal.py: PF_Pascal pads every image by 16 pixels and the grid border is cropped
    for name in ("pf-pascal-sfnet", "pf-pascal-sfnet-img"):
        assert get_protocol(name).model_input == "sfnet-published"
    assert get_protocol("pf-willow-kps").model_input == "model"
    sf = build_predictor("sfnet", weights=None, size=320, device="cpu", model_input="sfnet-published")
    assert isinstance(sf, SFNetPublishedPredictor) and sf.size == 320 and sf.pad == 16
    assert isinstance(build_predictor("sfnet", weights=None, size=320, device="cpu"), ModelPredictor)
    # the published input applies to SFNet only; another model keeps its own resize
    assert isinstance(build_predictor("mmnet", weights=None, size=320, device="cpu", model_input="sfnet-published"), ModelPredictor)


# ----------------------------------------------------------------------------- training


def synthetic_affine_batch(photos: list[Image.Image], size: int) -> dict[str, torch.Tensor]:
    """Pairs (photo, affinely warped photo) with whole-image masks, ImageNet-normalised."""
    src = torch.cat([image_to_float(p.resize((size, size), Image.BILINEAR)) for p in photos])
    b = src.shape[0]
    angle = torch.tensor([0.15, -0.10, 0.20])[:b]
    scale = torch.tensor([0.90, 1.10, 0.95])[:b]
    shift = torch.tensor([[0.10, -0.05], [-0.10, 0.10], [0.05, 0.0]])[:b]
    cos, sin = scale * torch.cos(angle), scale * torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, [b, 3, size, size], align_corners=True)
    trg = F.grid_sample(src, grid, align_corners=True)
    full = torch.ones(b, 1, size, size)
    trg_mask = (F.grid_sample(full, grid, align_corners=True) > 0.5).float()
    return {"src_image": normalize_imagenet(src), "trg_image": normalize_imagenet(trg),
            "src_mask": full, "trg_mask": trg_mask}


def test_short_training_lowers_the_loss_and_the_checkpoint_reloads(photos, tmp_path):
    torch.manual_seed(0)
    net = build_sfnet().train()
    batch = synthetic_affine_batch(photos, 128)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3, betas=(0.9, 0.999))
    losses = []
    for _ in range(4):
        loss, _ = net.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        final, _ = net.loss(batch)
    assert final.item() < 0.8 * losses[0]

    net.eval()
    path = tmp_path / "sfnet_mbv2.safetensors"
    save_checkpoint(path, net.head_state_dict(), {"config": net.config()})
    assert not any(k.startswith("backbone.") for k in net.head_state_dict())
    loaded = build_sfnet(weights=path)
    assert not loaded.training
    assert loaded.weights_id.startswith("file:sfnet_mbv2.safetensors:")
    with torch.no_grad():
        a = net(batch["src_image"][:1], batch["trg_image"][:1])
        b = loaded(batch["src_image"][:1], batch["trg_image"][:1])
    assert torch.equal(a.src_to_trg, b.src_to_trg) and torch.equal(a.trg_to_src, b.trg_to_src)
    assert torch.equal(a.corr, b.corr)
