"""Pseudo keypoints from the training-free matcher: hand-made scores, identities, a known shift, MMNet's use."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from conftest import CALTECH
from semcorr.backbones import DEFAULT_LAYERS, build_backbone
from semcorr.errors import UsageError
from semcorr.images import image_to_float, load_image, normalize_imagenet
from semcorr.models.mmnet import build_mmnet
from semcorr.pseudo_labels import mutual_nn_keypoints, teacher_scores

LAYERS = DEFAULT_LAYERS["mobilenet_v2"]


def test_mutual_nn_keypoints_by_hand():
    # 2x2 source and target grids (cells 0..3 row-major), images 11 high and 21 wide:
    # cell x=1 is pixel x=20, cell y=1 is pixel y=10
    c = torch.zeros(4, 4)
    c[0, 3] = 0.9  # src 0 <-> trg 3: mutual
    c[1, 3] = 0.5  # src 1 -> trg 3, but trg 3 prefers src 0
    c[2, 1] = 0.7  # src 2 <-> trg 1: mutual
    c[3, 1] = 0.6  # src 3 -> trg 1, but trg 1 prefers src 2
    src, trg = mutual_nn_keypoints(c.view(1, 2, 2, 2, 2), (11, 21), (11, 21), max_points=3, margin=0)
    assert src.shape == trg.shape == (1, 3, 2)
    torch.testing.assert_close(src[0, :2], torch.tensor([[0.0, 0.0], [0.0, 10.0]]))
    torch.testing.assert_close(trg[0, :2], torch.tensor([[20.0, 10.0], [20.0, 0.0]]))
    assert torch.isnan(src[0, 2]).all() and torch.isnan(trg[0, 2]).all()


def test_mutual_nn_keypoints_pads_small_grids_and_drops_non_positive_scores():
    c = -torch.ones(1, 1, 2, 1, 2)  # every score negative: no keypoint
    c[0, 0, 0, 0, 1] = -0.5
    src, trg = mutual_nn_keypoints(c, (8, 8), (8, 8), max_points=5, margin=0)
    assert src.shape == (1, 5, 2) and torch.isnan(src).all() and torch.isnan(trg).all()
    with pytest.raises(ValueError):
        mutual_nn_keypoints(c[0], (8, 8), (8, 8), 5)
    with pytest.raises(ValueError):
        mutual_nn_keypoints(c, (8, 8), (8, 8), 0)
    with pytest.raises(ValueError):
        mutual_nn_keypoints(c, (8, 8), (8, 8), 5, margin=-1)


def test_matches_near_the_border_are_left_out():
    # 5x5 grids, identity scores: with margin 2 only the centre cell (2, 2) is kept;
    # with margin 1 the 3x3 inner block, best scores first
    c = torch.eye(25).view(1, 5, 5, 5, 5) * torch.arange(1, 26).float().view(1, 5, 5, 1, 1)
    src, trg = mutual_nn_keypoints(c, (41, 41), (41, 41), max_points=10)
    torch.testing.assert_close(src[0, 0], torch.tensor([20.0, 20.0]))
    assert torch.isnan(src[0, 1:]).all()
    src, _ = mutual_nn_keypoints(c, (41, 41), (41, 41), max_points=10, margin=1)
    assert (~torch.isnan(src[0]).any(-1)).sum() == 9
    torch.testing.assert_close(src[0, 0], torch.tensor([30.0, 30.0]))  # cell (3, 3), score 19
    # a mutual match whose *target* end is on the border is left out too
    c = torch.zeros(1, 5, 5, 5, 5)
    c[0, 2, 2, 0, 0] = 1.0
    src, _ = mutual_nn_keypoints(c, (41, 41), (41, 41), max_points=2, margin=1)
    assert torch.isnan(src).all()


def test_an_image_matched_to_itself_gives_keypoints_on_themselves():
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, 16, 6, 5, generator=g), torch.randn(2, 8, 3, 3, generator=g)]
    corr = teacher_scores(feats, feats)
    assert corr.shape == (2, 6, 5, 6, 5)
    src, trg = mutual_nn_keypoints(corr, (51, 41), (51, 41), max_points=30, margin=0)
    assert not torch.isnan(src).any()  # every cell is its own mutual best match
    torch.testing.assert_close(src, trg)
    assert len({tuple(p) for p in src[0].tolist()}) == 30


@pytest.fixture(scope="module")
def shifted_caltech_pair():
    """A real image and the same scene shifted by 16 px right, 8 px down (both 160x160 crops)."""
    path = CALTECH / "Motorbikes" / "image_0002.jpg"
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    img = image_to_float(load_image(path).resize((200, 200), Image.BILINEAR))
    src = img[..., 20:180, 20:180]
    trg = img[..., 12:172, 4:164]  # scene point (x, y) of src is at (x + 16, y + 8) in trg
    return normalize_imagenet(src), normalize_imagenet(trg)


def test_pseudo_keypoints_recover_a_known_shift_on_a_real_image(shifted_caltech_pair):
    src, trg = shifted_caltech_pair
    bb = build_backbone("mobilenet_v2")
    with torch.no_grad():
        fa, fb = bb(src, LAYERS), bb(trg, LAYERS)
        corr = teacher_scores([fa[k] for k in LAYERS], [fb[k] for k in LAYERS])
    skp, tkp = mutual_nn_keypoints(corr, (160, 160), (160, 160), max_points=32)
    ok = ~torch.isnan(skp).any(-1)
    assert ok.sum() == 32
    err = (tkp - skp - torch.tensor([16.0, 8.0])).norm(dim=-1)[ok]
    cell = 159 / 19  # one cell of the stride-8 grid (20 cells over 160 px)
    assert (err <= cell).float().mean() >= 0.9, err
    # without the border margin, position-locked border matches (zero shift) win the top ranks
    skp, tkp = mutual_nn_keypoints(corr, (160, 160), (160, 160), max_points=8, margin=0)
    assert ((tkp - skp).norm(dim=-1) < 1).any()


def test_mmnet_pseudo_supervision_trains_on_pairs_without_keypoints(shifted_caltech_pair):
    src, trg = shifted_caltech_pair
    torch.manual_seed(0)
    model = build_mmnet("mobilenet_v2", train_backbone=False, supervision="pseudo", pseudo_points=16)
    assert model.train_data == "weak" and build_mmnet("mobilenet_v2").train_data == "keypoints"
    assert model.config()["supervision"] == "pseudo" and model.config()["pseudo_points"] == 16
    model.train()
    batch = {"src_image": src, "trg_image": trg}
    loss, logs = model.loss(batch)
    assert logs["keypoints"] == 16 and math.isfinite(loss.item()) and loss.item() > 0
    loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    # the same keypoints given as labels give the same loss
    with torch.no_grad():
        feats_a, feats_b = model.backbone(src, LAYERS), model.backbone(trg, LAYERS)
        skp, tkp = model.pseudo_keypoints(src, trg, feats_a, feats_b)
    labelled = build_mmnet("mobilenet_v2", train_backbone=False)
    labelled.load_state_dict(model.state_dict())
    labelled.train()
    again, _ = labelled.loss(dict(batch, src_kps=skp, trg_kps=tkp))
    torch.testing.assert_close(again, loss.detach())


def test_mmnet_supervision_options_are_checked():
    with pytest.raises(UsageError, match="supervision"):
        build_mmnet("mobilenet_v2", supervision="teacher")
    with pytest.raises(UsageError, match="pseudo_points"):
        build_mmnet("mobilenet_v2", supervision="pseudo", pseudo_points=0)
    with pytest.raises(UsageError, match="src_kps"):
        build_mmnet("mobilenet_v2").loss({"src_image": torch.zeros(1, 3, 64, 64), "trg_image": torch.zeros(1, 3, 64, 64)})


def test_ncnet_teacher_recovers_the_known_shift_and_stays_out_of_the_student(shifted_caltech_pair):
    src, trg = shifted_caltech_pair
    model = build_mmnet("mobilenet_v2", train_backbone=False, supervision="pseudo", teacher="ncnet", pseudo_points=16)
    assert model.config()["teacher"] == "ncnet" and build_mmnet("mobilenet_v2").config()["teacher"] == "nn"
    skp, tkp = model.pseudo_keypoints(src, trg, {}, {})  # the NC-Net teacher reads the images only
    ok = ~torch.isnan(skp).any(-1)
    assert ok.sum() == 16
    # 160 px on the stride-16 grid: 10 cells, one every 159/9 px; the 16 px, 8 px shift is about
    # one cell right and half a cell down, so a right match is at most one cell off
    err = (tkp - skp - torch.tensor([16.0, 8.0])).norm(dim=-1)[ok]
    assert (err <= 159 / 9).float().mean() >= 0.9, err
    # the teacher (built on first use) is neither a submodule nor in the checkpoint
    assert not any("teacher" in name for name, _ in model.named_modules())
    assert set(model.state_dict()) == set(build_mmnet("mobilenet_v2", train_backbone=False).state_dict())
    # the loss trains on the teacher's keypoints: the same as given as labels
    model.train()
    loss, logs = model.loss({"src_image": src, "trg_image": trg})
    assert logs["keypoints"] == 16
    labelled = build_mmnet("mobilenet_v2", train_backbone=False)
    labelled.load_state_dict(model.state_dict())
    labelled.train()
    again, _ = labelled.loss({"src_image": src, "trg_image": trg, "src_kps": skp, "trg_kps": tkp})
    torch.testing.assert_close(again, loss.detach())


def test_teacher_option_is_checked():
    with pytest.raises(UsageError, match="unknown teacher"):
        build_mmnet("mobilenet_v2", supervision="pseudo", teacher="dccnet")
    with pytest.raises(UsageError, match="needs supervision=pseudo"):
        build_mmnet("mobilenet_v2", teacher="ncnet")
    with pytest.raises(UsageError, match="shipped for backbone resnet50"):
        build_mmnet("resnet50", backbone_weights="random", supervision="pseudo", teacher="ncnet")


def test_the_train_banner_names_the_supervision():
    assert build_mmnet("mobilenet_v2").supervision_summary == "keypoint supervision"
    pseudo = build_mmnet("mobilenet_v2", supervision="pseudo", teacher="ncnet")
    assert pseudo.supervision_summary == "pseudo keypoints from the ncnet teacher"
    from semcorr.models.ncnet import build_ncnet

    assert build_ncnet("mobilenet_v2").supervision_summary == "weak supervision"
