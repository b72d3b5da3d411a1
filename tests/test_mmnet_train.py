"""A short CPU training run of MMNet on synthetic keypoint pairs, and its checkpoint loaded back."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import CALTECH
from semcorr.geometry import affine_grid_points, normalized_to_pixels, pixel_grid, pixels_to_normalized
from semcorr.images import image_to_float, load_image, normalize_imagenet
from semcorr.models.mmnet import MMNet, build_mmnet
from semcorr.weights import save_checkpoint

SIZE = 96


def affine_pair(path: Path, angle: float, scale: float, tx: float, ty: float):
    """An image and its affine warp, with 25 target keypoints (on pixels) and their exact source positions.

    The target samples the source at ``theta @ [x_t, y_t, 1]`` (normalised
    coordinates, align_corners=True); source keypoints that fall outside the
    image are NaN.
    """
    img = image_to_float(load_image(path).resize((SIZE, SIZE), Image.BILINEAR))
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    theta = torch.tensor([[[c, -s, tx], [s, c, ty]]])
    trg = F.grid_sample(img, F.affine_grid(theta, (1, 3, SIZE, SIZE), align_corners=True), align_corners=True)
    trg_kps = torch.round(pixel_grid(5, 5).reshape(1, -1, 2) * (SIZE - 1) / 4 * 0.8 + 0.1 * (SIZE - 1))
    src_kps = normalized_to_pixels(affine_grid_points(theta, pixels_to_normalized(trg_kps, (SIZE, SIZE))), (SIZE, SIZE))
    outside = ((src_kps < 0) | (src_kps > SIZE - 1)).any(-1, keepdim=True)
    src_kps = torch.where(outside, torch.full_like(src_kps, float("nan")), src_kps)
    return img, trg, src_kps, trg_kps


@pytest.fixture(scope="module")
def batch() -> dict[str, torch.Tensor]:
    if not CALTECH.is_dir():
        pytest.skip(f"{CALTECH} is not here")
    pairs = [
        affine_pair(CALTECH / "Motorbikes" / "image_0001.jpg", 0.15, 0.9, 0.05, -0.05),
        affine_pair(CALTECH / "airplanes" / "image_0001.jpg", -0.1, 1.1, -0.05, 0.05),
    ]
    src, trg, src_kps, trg_kps = (torch.cat(parts) for parts in zip(*pairs))
    return {"src_image": normalize_imagenet(src), "trg_image": normalize_imagenet(trg), "src_kps": src_kps, "trg_kps": trg_kps}


def test_synthetic_pairs_are_consistent(batch):
    # the warped image at a target keypoint shows the source pixel at the matching source keypoint
    src, trg = batch["src_image"], batch["trg_image"]
    for b in range(2):
        for s, t in zip(batch["src_kps"][b], batch["trg_kps"][b]):
            if torch.isnan(s).any():
                continue
            norm = lambda p: pixels_to_normalized(p, (SIZE, SIZE)).view(1, 1, 1, 2)  # noqa: E731
            a = F.grid_sample(src[b : b + 1], norm(s), align_corners=True)
            c = F.grid_sample(trg[b : b + 1], norm(t), align_corners=True)
            torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-4)
    assert torch.isnan(batch["src_kps"]).any()  # some keypoints leave the image and are ignored


def test_short_training_run_lowers_the_loss_and_its_checkpoint_loads_back(batch, tmp_path):
    torch.manual_seed(0)
    model = build_mmnet("mobilenet_v2")
    d = MMNet.train_defaults
    optimizer = torch.optim.SGD(
        model.param_groups(d["lr"]), lr=d["lr"], momentum=d["momentum"], weight_decay=d["weight_decay"]
    )
    model.train()
    losses = []
    for _ in range(5):
        loss, logs = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        final, logs = model.loss(batch)
    losses.append(final.item())
    assert logs["keypoints"] == float((~torch.isnan(batch["src_kps"]).any(-1)).sum())
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < losses[0] - 0.5
    # the backbone was fine-tuned too
    reference = build_mmnet("mobilenet_v2")
    assert not torch.equal(model.backbone.stages[3].conv[0][0].weight, reference.backbone.stages[3].conv[0][0].weight)

    model.eval()
    path = tmp_path / "mmnet_trained.safetensors"
    save_checkpoint(path, model.head_state_dict(), {"config": model.config(), "iterations": 5})
    loaded = build_mmnet(weights=path)
    with torch.no_grad():
        expected = model(batch["src_image"], batch["trg_image"])
        got = loaded(batch["src_image"], batch["trg_image"])
    assert torch.equal(got.corr, expected.corr)
    assert torch.equal(got.src_to_trg, expected.src_to_trg) and torch.equal(got.trg_to_src, expected.trg_to_src)
