"""Training data sources: SPEC parsing, synthetic pairs (exact correspondence), same-class pairs, annotated pairs, order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import CALTECH
from semcorr.training_data import (
    AnnotatedPairs,
    SameClassPairs,
    StepOrder,
    SyntheticConfig,
    SyntheticPairs,
    collate_pairs,
    make_synthetic_pair,
    open_training_source,
    parse_data_spec,
    scan_class_tree,
    segmentation_foreground,
)
from semcorr.training_data.augment import is_well_conditioned, item_rng, random_affine
from semcorr.training_data.loading import scale_keypoints
from semcorr.training_data.masks import box_mask
from semcorr.training_data.order import RankBatchSampler, seeded_subset
from semcorr.errors import DataError, UsageError
from semcorr.geometry import pixels_to_normalized
from semcorr.images import IMAGENET_MEAN, IMAGENET_STD


MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)
NO_JITTER = SyntheticConfig(jitter=0.0, num_keypoints=400)


def unnormalise(x: torch.Tensor) -> torch.Tensor:
    return x * STD + MEAN


def bilinear_at(image: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Sample ``(C, H, W)`` at pixel points ``(N, 2)`` → ``(C, N)``."""
    grid = pixels_to_normalized(points, tuple(image.shape[-2:])).view(1, 1, -1, 2)
    return F.grid_sample(image.unsqueeze(0), grid, mode="bilinear", align_corners=True)[0, :, 0]


def interior(flow_other: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """True where all four pixels around each point have a defined correspondence (image content, no padding)."""
    h, w = flow_other.shape[:2]
    x0, y0 = points[:, 0].floor().long(), points[:, 1].floor().long()
    ok = (x0 >= 0) & (y0 >= 0) & (x0 + 1 < w) & (y0 + 1 < h)
    x0, y0 = x0.clamp(0, w - 2), y0.clamp(0, h - 2)
    for dx in (0, 1):
        for dy in (0, 1):
            ok &= torch.isfinite(flow_other[y0 + dy, x0 + dx]).all(dim=1)
    return ok


def ramp_image(h: int, w: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    return torch.stack([xs / w, ys / h, 0.5 * (xs / w + 1 - ys / h)])


# ----------------------------------------------------------------------------- SPEC


def test_parse_data_spec_kinds_splits_and_options():
    s = parse_data_spec("folder:/data/caltech,masks=/data/masks")
    assert (s.kind, s.root, s.split, s.options) == ("folder", Path("/data/caltech"), None, {"masks": "/data/masks"})
    s = parse_data_spec("pf-pascal:/data/PF-PASCAL:val")
    assert (s.kind, s.root, s.split) == ("pf-pascal", Path("/data/PF-PASCAL"), "val")
    assert parse_data_spec("spair:/d/SPair-71k").with_default_split("train").split == "train"
    assert parse_data_spec("spair:/d/SPair-71k:test").with_default_split("train").split == "test"
    bare = parse_data_spec("relative/images")
    assert (bare.kind, bare.root) == ("folder", Path("relative/images"))
    with pytest.raises(UsageError, match="unknown data kind 'imagenet'"):
        parse_data_spec("imagenet:/x")
    with pytest.raises(UsageError, match="unknown split 'dev'"):
        parse_data_spec("pf-pascal:/x:dev")
    with pytest.raises(UsageError, match="option 'boxes' is not known"):
        parse_data_spec("folder:/x,boxes=/y")


# ----------------------------------------------------------------------------- synthetic pairs


def test_random_affine_is_noisy_identity_and_well_conditioned():
    rng = np.random.default_rng(3)
    thetas = np.stack([random_affine(rng) for _ in range(300)])
    assert all(is_well_conditioned(t) for t in thetas)
    noise = thetas - np.array([[1, 0, 0], [0, 1, 0]])
    assert 0.12 < noise.std() < 0.17  # N(0, 0.15) on the six parameters, lightly truncated
    assert abs(noise.mean()) < 0.03


def test_synthetic_correspondence_is_exact_on_image_content():
    """A linear ramp is reproduced exactly by bilinear sampling: matched points must carry equal values."""
    image, mask = ramp_image(40, 48), torch.ones(1, 40, 48)
    checked = 0
    for k in range(6):
        pair = make_synthetic_pair(image, mask, item_rng(7, 0, k), NO_JITTER)
        src, trg = unnormalise(pair["src_image"]), unnormalise(pair["trg_image"])
        sk, tk = pair["src_kps"], pair["trg_kps"]
        ok = torch.isfinite(sk).all(dim=1)
        sk, tk = sk[ok], tk[ok]
        assert torch.equal(sk, sk.round())  # source points are pixel centres
        inner = interior(pair["flow_trg_to_src"], tk)
        src_vals = src[:, sk[inner, 1].long(), sk[inner, 0].long()]
        trg_vals = bilinear_at(trg, tk[inner])
        assert torch.allclose(src_vals, trg_vals, atol=2e-5)
        checked += int(inner.sum())
    assert checked > 500


def test_synthetic_correspondence_follows_a_rendered_dot():
    """The centroid of a bright blob in the source view maps onto its centroid in the target view."""
    h, w = 48, 48
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    for k in range(4):
        cx, cy = 18 + 4 * k, 26 - 3 * k
        blob = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 2.0**2))
        image = blob.expand(3, h, w).clone()
        pair = make_synthetic_pair(image, torch.ones(1, h, w), item_rng(1, 0, k), NO_JITTER)
        src, trg = unnormalise(pair["src_image"])[0], unnormalise(pair["trg_image"])[0]
        centroid = lambda im: torch.stack([(im * xs).sum(), (im * ys).sum()]) / im.sum()  # noqa: E731
        c_src, c_trg = centroid(src), centroid(trg)
        flow = pair["flow_src_to_trg"].permute(2, 0, 1)
        moved = pixels_to_normalized(c_src, (h, w))
        pred_norm = F.grid_sample(flow[None], moved.view(1, 1, 1, 2), align_corners=True)[0, :, 0, 0]
        pred = (pred_norm + 1) * torch.tensor([(w - 1) / 2, (h - 1) / 2])
        assert torch.linalg.norm(pred - c_trg) < 0.25, (k, pred, c_trg)


def test_synthetic_flows_are_inverse_and_nan_outside():
    h, w = 36, 44
    pair = make_synthetic_pair(ramp_image(h, w), torch.ones(1, h, w), item_rng(2, 5, 9), NO_JITTER)
    st, ts = pair["flow_src_to_trg"], pair["flow_trg_to_src"]
    valid = torch.isfinite(st).all(dim=-1)
    assert 0.2 < valid.float().mean() < 1.0  # some pixels leave the other view, most do not
    assert (st[valid].abs() <= 1 + 1e-6).all()
    assert torch.isnan(st[~valid]).all()
    ys, xs = torch.nonzero(valid, as_tuple=True)
    src_px = torch.stack([xs, ys], dim=1).float()
    trg_px = (st[ys, xs] + 1) * torch.tensor([(w - 1) / 2, (h - 1) / 2])
    inner = interior(ts, trg_px)
    back = bilinear_at(ts.permute(2, 0, 1), trg_px[inner]).t()
    back_px = (back + 1) * torch.tensor([(w - 1) / 2, (h - 1) / 2])
    assert inner.sum() > 200
    assert torch.allclose(back_px, src_px[inner], atol=1e-3)


def test_synthetic_masks_are_warped_with_the_image():
    h, w = 40, 40
    mask = torch.zeros(1, h, w)
    mask[:, 8:30, 10:34] = 1
    pair = make_synthetic_pair(ramp_image(h, w), mask, item_rng(4, 0, 0), NO_JITTER)
    sk, tk = pair["src_kps"], pair["trg_kps"]
    ok = torch.isfinite(sk).all(dim=1)
    assert ok.sum() > 50
    assert (pair["src_mask"][0, sk[ok, 1].long(), sk[ok, 0].long()] == 1).all()  # keypoints are foreground
    hit = pair["trg_mask"][0, tk[ok, 1].round().long().clamp(0, h - 1), tk[ok, 0].round().long().clamp(0, w - 1)]
    assert hit.float().mean() > 0.9  # and their matches land on the warped foreground
    assert set(pair["src_mask"].unique().tolist()) <= {0.0, 1.0}


def test_synthetic_keypoints_are_nan_padded_when_the_foreground_is_small():
    h, w = 32, 32
    mask = torch.zeros(1, h, w)
    mask[:, 15:17, 15:17] = 1
    pair = make_synthetic_pair(ramp_image(h, w), mask, item_rng(0, 0, 0), SyntheticConfig(jitter=0.0, flip_prob=0.0, num_keypoints=50))
    n_valid = int(torch.isfinite(pair["src_kps"]).all(dim=1).sum())
    assert 1 <= n_valid <= 8
    assert torch.isnan(pair["src_kps"][n_valid:]).all() and torch.isnan(pair["trg_kps"][n_valid:]).all()


def test_synthetic_pairs_are_a_pure_function_of_seed_epoch_index():
    src = open_training_source(f"folder:{CALTECH}", "synthetic", 32, seed=5, limit=6)
    assert isinstance(src, SyntheticPairs) and len(src) == 6
    assert "whole image" in src.describe()
    a, b = src[(2, 3)], src[(2, 3)]
    same = lambda x, y: torch.equal(torch.nan_to_num(x, nan=-7.0), torch.nan_to_num(y, nan=-7.0))  # noqa: E731
    assert a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    assert not same(a["src_image"], src[(3, 3)]["src_image"])  # another epoch, another draw
    assert not same(a["src_image"], src[(2, 4)]["src_image"])
    assert a["src_image"].shape == (3, 32, 32) and a["flow_src_to_trg"].shape == (32, 32, 2)


# ----------------------------------------------------------------------------- masks


def test_segmentation_png_labels_are_foreground_void_is_not(tmp_path):
    labels = np.zeros((6, 8), dtype=np.uint8)
    labels[1, 1], labels[2, 2], labels[3, 3] = 1, 15, 255
    img = Image.fromarray(labels, mode="P")
    img.putpalette([0, 0, 0, 128, 0, 0] + [0] * (3 * 254))
    img.save(tmp_path / "m.png")
    fg = segmentation_foreground(tmp_path / "m.png")
    assert fg.sum() == 2 and fg[1, 1] and fg[2, 2] and not fg[3, 3]
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[0, 0] = (128, 0, 0)
    rgb[1, 1] = (224, 224, 192)  # VOC void colour
    Image.fromarray(rgb).save(tmp_path / "c.png")
    fg = segmentation_foreground(tmp_path / "c.png")
    assert fg.sum() == 1 and fg[0, 0]


def test_box_mask_scales_with_the_resize():
    m = box_mask((10, 0, 19, 9), orig_size=(20, 40), size=(10, 20))
    assert m.shape == (1, 10, 20)
    cols = m[0].any(dim=0).nonzero().squeeze(1).tolist()
    assert cols == [5, 6, 7, 8, 9]
    assert m[0, :5].all(dim=0)[5:10].all() and not m[0, 5:].any()


def test_folder_source_uses_segmentation_masks_when_given(tmp_path):
    root, masks = tmp_path / "images", tmp_path / "masks"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((20, 30, 3), 60 * i + 40, dtype=np.uint8)).save(root / cls / f"{cls}{i}.jpg")
    masks.mkdir()
    lab = np.zeros((20, 30), dtype=np.uint8)
    lab[5:15, 10:20] = 3
    Image.fromarray(lab).save(masks / "cat0.png")
    src = open_training_source(f"folder:{root},masks={masks}", "keypoints", 24, seed=0)
    assert isinstance(src, SyntheticPairs) and len(src) == 4
    assert [m.kind for m in src.masks].count("segmentation") == 1
    assert "segmentation PNGs (1)" in src.describe() and "whole image (no masks) (3)" in src.describe()
    i = [p.name for p in src.images].index("cat0.jpg")
    item = src[(0, i)]
    assert 0.05 < item["src_mask"].mean() < 0.5


# ----------------------------------------------------------------------------- same-class pairs


def test_same_class_pairs_from_the_caltech_tree():
    tree = scan_class_tree(CALTECH)
    assert len(tree.classes) == 101 and len(tree.images) > 3000
    pairs = SameClassPairs(tree, (32, 32), seed=1, subset=seeded_subset(len(tree.images), 40, 1))
    assert len(pairs) == 40
    for i in range(len(pairs)):
        a, b = pairs.sources[i], pairs.partner(0, i)
        assert a != b and tree.images[a][1] == tree.images[b][1]
    partners0 = [pairs.partner(0, i) for i in range(40)]
    assert partners0 == [pairs.partner(0, i) for i in range(40)]  # deterministic
    assert partners0 != [pairs.partner(1, i) for i in range(40)]  # redrawn each epoch
    item = pairs[(0, 0)]
    assert item["src_image"].shape == item["trg_image"].shape == (3, 32, 32)
    assert not torch.equal(item["src_image"], item["trg_image"])


def test_empty_or_classless_data_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="yields no images"):
        open_training_source(f"folder:{tmp_path / 'empty'}", "synthetic", 32, 0)
    single = tmp_path / "single"
    for cls in ("a", "b"):
        (single / cls).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(single / cls / "x.png")
    with pytest.raises(DataError, match="yields no same-class image pairs"):
        open_training_source(f"folder:{single}", "weak", 32, 0)
    with pytest.raises(DataError, match="does not exist"):
        open_training_source(f"folder:{tmp_path / 'nope'}", "synthetic", 32, 0)
    with pytest.raises(UsageError, match="needs class labels"):
        open_training_source(f"voc:{tmp_path}", "weak", 32, 0)


# ----------------------------------------------------------------------------- annotated pairs


class FakeBenchmark:
    """Stands in for a semcorr.datasets reader: a list of KeypointPair."""

    name, split = "pf-pascal", "train"

    def __init__(self, pairs, root):
        self.pairs, self.root = pairs, root

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        return self.pairs[i]


def test_annotated_pairs_resize_keypoints_and_apply_the_split_flip(tmp_path):
    from semcorr.datasets.base import KeypointPair

    ys, xs = np.mgrid[0:30, 0:60]
    Image.fromarray(np.stack([xs * 4, ys * 8, xs * 0], -1).astype(np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.stack([xs * 0, ys * 8, xs * 4], -1).astype(np.uint8)).save(tmp_path / "b.png")
    kps_a = np.array([[0.0, 0.0], [59.0, 29.0], [np.nan, np.nan], [10.0, 5.0]])
    kps_b = np.array([[5.0, 5.0], [50.0, 20.0], [3.0, 3.0], [np.nan, np.nan]])

    def pair(flip):
        return KeypointPair("p", tmp_path / "a.png", tmp_path / "b.png", "a.png", "b.png", kps_a, kps_b, "car",
                            src_bbox=np.array([0, 0, 59, 29.0]), trg_bbox=np.array([10, 5, 40, 25.0]), meta={"flip": flip})  # fmt: skip

    ds = AnnotatedPairs(FakeBenchmark([pair(False), pair(True)], tmp_path), [0, 1], (15, 30), pck_reference="bbox")
    plain, flipped = ds[(0, 0)], ds[(0, 1)]
    expected = scale_keypoints(kps_a, (30, 60), (15, 30))
    assert torch.allclose(plain["src_kps"][:2], expected[:2])
    assert torch.allclose(plain["src_kps"][0], torch.tensor([-0.25, -0.25]))  # (x + 0.5) * 0.5 - 0.5
    assert torch.isnan(plain["src_kps"][2:]).all() and torch.isnan(plain["trg_kps"][2:]).all()  # rows missing on one side
    assert torch.allclose(plain["trg_pck_ref"], torch.tensor(15.0))  # bbox side (30 px) halved
    assert torch.equal(flipped["src_image"], plain["src_image"].flip(-1))
    assert torch.equal(flipped["trg_image"], plain["trg_image"].flip(-1))
    assert torch.allclose(flipped["src_kps"][:2, 0], 29 - plain["src_kps"][:2, 0])
    no_flip = AnnotatedPairs(FakeBenchmark([pair(True)], tmp_path), [0], (15, 30), flip=False)
    assert torch.equal(no_flip[(0, 0)]["src_image"], plain["src_image"])


def test_collate_pads_keypoints_with_nan():
    items = [{"src_kps": torch.zeros(2, 2), "x": torch.ones(3)}, {"src_kps": torch.ones(4, 2), "x": torch.zeros(3)}]
    batch = collate_pairs(items)
    assert batch["src_kps"].shape == (2, 4, 2) and torch.isnan(batch["src_kps"][0, 2:]).all()
    assert batch["x"].shape == (2, 3)


# ----------------------------------------------------------------------------- order


def test_step_order_shards_disjointly_and_is_pure():
    order = StepOrder(n_items=23, batch_size=3, world_size=2, seed=11)
    assert order.steps_per_epoch == 3  # 23 // 6, the incomplete batch is dropped
    seen = []
    for step in range(order.steps_per_epoch):
        r0, r1 = order.batch_keys(4, step, 0), order.batch_keys(4, step, 1)
        assert len(r0) == len(r1) == 3 and not set(r0) & set(r1)
        seen += r0 + r1
    assert len(set(seen)) == 18 and all(e == 4 for e, _ in seen)
    resumed = list(RankBatchSampler(order, epoch=4, rank=1, start=2))
    assert resumed == [order.batch_keys(4, 2, 1)]
    assert order.batch_keys(4, 0, 0) != order.batch_keys(5, 0, 0)
    assert StepOrder(23, 3, 2, 11).batch_keys(4, 1, 1) == order.batch_keys(4, 1, 1)


# ----------------------------------------------------------------------------- with the PF-PASCAL reader


def make_pf_pascal(root: Path) -> None:
    """A PF-PASCAL look-alike: 3 images, their .mat annotations, an NC-Net style training list with flips."""
    import scipy.io

    jpg = root / "PF-dataset-PASCAL" / "JPEGImages"
    ann = root / "PF-dataset-PASCAL" / "Annotations" / "car"
    jpg.mkdir(parents=True)
    ann.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate(["2008_000001", "2008_000002", "2008_000003"]):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(jpg / f"{name}.jpg")
        kps = np.array([[11.0, 6.0], [31.0 + i, 21.0], [np.nan, np.nan]])  # Matlab 1-based
        scipy.io.savemat(ann / f"{name}.mat", {"kps": kps, "bbox": np.array([[5.0, 3.0, 45.0, 30.0]])})
    rows = ["source_image,target_image,class,flip"]
    for a, b, flip in (("000001", "000002", 0), ("000002", "000003", 1)):
        rows.append(f"PF-dataset-PASCAL/JPEGImages/2008_{a}.jpg,PF-dataset-PASCAL/JPEGImages/2008_{b}.jpg,7,{flip}")
    (root / "train_pairs.csv").write_text("\n".join(rows) + "\n")


def test_pf_pascal_spec_gives_annotated_pairs_or_box_masked_synthetic_pairs(tmp_path):
    make_pf_pascal(tmp_path)
    pairs = open_training_source(f"pf-pascal:{tmp_path}", "keypoints", (20, 30), seed=0)  # split defaults to train
    assert isinstance(pairs, AnnotatedPairs) and len(pairs) == 2 and "pf-pascal" in pairs.describe()
    first, flipped = pairs[(0, 0)], pairs[(0, 1)]
    # (10, 5) zero-based in a 60x40 image → resized to 30x20: (x + 0.5) / 2 - 0.5
    assert torch.allclose(first["src_kps"][0], torch.tensor([4.75, 2.25]))
    assert torch.isnan(first["src_kps"][2]).all()
    assert torch.allclose(flipped["src_kps"][0], torch.tensor([29 - 4.75, 2.25]))  # flip=1 in the list
    assert first["trg_pck_ref"] == 30  # PF-PASCAL: the image's longer side
    weak = open_training_source(f"pf-pascal:{tmp_path}:train", "weak", 24, seed=0)
    assert isinstance(weak, AnnotatedPairs) and len(weak) == 2
    synthetic = open_training_source(f"pf-pascal:{tmp_path}", "synthetic", 24, seed=0)
    assert isinstance(synthetic, SyntheticPairs) and len(synthetic) == 3  # the distinct images
    assert all(m.kind == "box" for m in synthetic.masks) and "bounding boxes (3)" in synthetic.describe()
    assert 0.3 < synthetic[(0, 0)]["src_mask"].mean() < 0.8
