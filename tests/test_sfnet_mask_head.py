"""SFNet's mask regression layers, their L2 loss, loading, the co-segmentation output and the tss-coseg preset."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from semcorr.coseg import cosegment, read_through_flow
from semcorr.datasets import open_dataset
from semcorr.evaluate import PredictorSource, evaluate
from semcorr.io.middlebury_flo import write_flo
from semcorr.losses.sfnet import masks_on_grid, sfnet_objective
from semcorr.models.sfnet import MASK_NAMES, SFNet, build_sfnet
from semcorr.pipeline import ModelPredictor, identity_flow
from semcorr.protocols import customize, get_protocol
from semcorr.weights import save_checkpoint
from semcorr_cli.main import app

W, H = 20, 16


def rect(x0, x1, y0, y1, value=1.0, low=0.0):
    m = np.full((H, W), low, dtype=np.float32)
    m[y0 : y1 + 1, x0 : x1 + 1] = value
    return m


def make_tss(root: Path) -> Path:
    """Three pairs in the TSS layout (FG3DCar/p1, JODS/a, JODS/b), zero flows, known masks; JODS/b flipped."""
    for subset, name, flip in (("FG3DCar", "p1", 0), ("JODS", "a", 0), ("JODS", "b", 1)):
        d = root / subset / name
        d.mkdir(parents=True)
        for i in (1, 2):
            Image.new("RGB", (W, H), (40 * i, 90, 0)).save(d / f"image{i}.png")
            write_flo(d / f"flow{i}.flo", np.zeros((H, W, 2)))
        Image.fromarray((rect(2, 11, 2, 9) * 255).astype(np.uint8)).save(d / "mask1.png")  # 80 px
        Image.fromarray((rect(5, 14, 4, 11) * 255).astype(np.uint8)).save(d / "mask2.png")  # 80 px
        (d / "flip_gt.txt").write_text(f"{flip}\n")
    return root


def test_default_sfnet_is_unchanged_and_the_shipped_weights_load_under_a_fresh_mask_head():
    plain = build_sfnet(weights="default")
    masked = build_sfnet(weights="default", mask_head=True)
    assert "mask_head" not in plain.config() and plain.mask_head_state == "none"
    assert not any(k.startswith(MASK_NAMES) for k in plain.state_dict())
    assert masked.config()["mask_head"] is True and masked.mask_head_state == "fresh"
    assert masked.weights_id == plain.weights_id + "+fresh-mask-head"
    src = Image.fromarray((np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8))
    trg = Image.fromarray((np.random.default_rng(1).random((40, 56, 3)) * 255).astype(np.uint8))
    a, b = ModelPredictor(plain, 64), ModelPredictor(masked, 64)
    for f, g in zip(a.predict(src, trg), b.predict(src, trg)):
        np.testing.assert_array_equal(f, g)  # the mask head does not touch the flows
    st, ts, ms, mt = b.predict_coseg(src, trg)
    assert ms.shape == (48, 64) and mt.shape == (40, 56) and 0 <= ms.min() and ms.max() <= 1
    with pytest.raises(Exception, match="mask_head"):
        a.predict_coseg(src, trg)


def test_mask_prediction_loss_and_checkpoint_round_trip(tmp_path, mobilenet):
    model = SFNet(mobilenet, mask_head=True, mask_weight=2.0)
    imgs = torch.randn(2, 3, 64, 64)
    m = model(imgs[:1], imgs[1:])
    fine = model.adapt(model.backbone(imgs[:1], model.required_layers))
    m3 = model.mask_reg_feat3(fine[0])
    m4 = torch.nn.functional.interpolate(model.mask_reg_feat4(fine[1]), size=m3.shape[-2:], mode="bilinear", align_corners=True)
    torch.testing.assert_close(m.mask_src, (m3 * m4)[:, 0])  # the product of the two regressions
    assert m.mask_src.shape == m.src_to_trg.shape[:3]
    # loss = SFNet's objective + mask_weight · (L2 of the source mask + L2 of the target mask)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 8:40, 8:40] = 1
    batch = {"src_image": imgs[:1], "trg_image": imgs[1:], "src_mask": mask, "trg_mask": torch.ones(1, 1, 64, 64)}
    total, logs = model.loss(batch)
    grid = tuple(m.src_to_trg.shape[1:3])
    ms, mt = masks_on_grid(mask, grid), masks_on_grid(torch.ones(1, 1, 64, 64), grid)
    base, _ = sfnet_objective(m.src_to_trg, m.trg_to_src, ms, mt)
    l2 = ((m.mask_src[:, None] - ms) ** 2).mean() + ((m.mask_trg[:, None] - mt) ** 2).mean()
    assert logs["mask_regression"] == pytest.approx(float(l2.detach()), rel=1e-5)
    assert float(total.detach()) == pytest.approx(float((base + 2.0 * l2).detach()), rel=1e-5)
    total.backward()
    assert model.mask_reg_feat3.conv.weight.grad.abs().sum() > 0 and model.mask_reg_feat4.conv.weight.grad.abs().sum() > 0
    # saved like any checkpoint; the sidecar's config brings the mask head back, "trained"
    with torch.no_grad():
        model.mask_reg_feat3.conv.bias.fill_(0.25)
    save_checkpoint(tmp_path / "m.safetensors", model.head_state_dict(), {"config": model.config()})
    back = build_sfnet(weights=tmp_path / "m.safetensors")
    assert back.mask_head and back.mask_head_state == "trained" and back.mask_weight == 2.0
    assert float(back.mask_reg_feat3.conv.bias.detach()) == 0.25
    plain = build_sfnet(weights=tmp_path / "m.safetensors", mask_head=False)  # the flows alone: mask layers dropped
    assert not plain.mask_head


def test_cosegment_reads_the_other_mask_through_the_flow():
    ms, mt = rect(2, 11, 2, 9), rect(5, 14, 4, 11)
    same = identity_flow((H, W), (H, W))
    co_s, co_t = cosegment(ms, mt, same, same)
    np.testing.assert_allclose(co_s, ms * mt, atol=1e-5)  # no motion: the intersection, on both sides
    np.testing.assert_allclose(co_t, ms * mt, atol=1e-5)
    shifted = same + np.float32([3, 2])  # source pixel (x, y) matches target (x + 3, y + 2)
    np.testing.assert_allclose(read_through_flow(mt, shifted)[2:10, 2:12], np.ones((8, 10)), atol=1e-5)
    assert read_through_flow(mt, shifted)[0, 0] == 0.0
    assert read_through_flow(mt, np.full((H, W, 2), np.nan, np.float32)).max() == 0.0


def write_mask_records(path: Path, masks: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    with h5py.File(path, "w") as f:
        f.attrs["semcorr_format"] = 1
        for k, (pid, (ms, mt)) in enumerate(masks.items()):
            g = f.create_group(f"pairs/r{k}")
            g.attrs["src_path"], g.attrs["trg_path"] = f"{pid}/image1.png", f"{pid}/image2.png"
            g.attrs["src_size"] = g.attrs["trg_size"] = np.array([H, W])
            g.create_dataset("mask/src", data=ms)
            g.create_dataset("mask/trg", data=mt)


def test_tss_coseg_iou_by_hand_from_records_and_warp_png(tmp_path):
    # ground truth: mask1 = 10 × 8 box, mask2 = another 10 × 8 box. Predicted (soft, foreground > 0.5):
    #   FG3DCar/p1: src = top half of mask1 (IoU 40/80 = 0.5), trg = mask2 (1)        → subset (0.5 + 1) / 2 = 75
    #   JODS/a: src empty (0), trg = mask2 (1);  JODS/b: src = top half (0.5), trg (1) → subset 2.5 / 4 = 62.5
    root = make_tss(tmp_path / "TSS")
    half, full2, empty = rect(2, 11, 2, 5, 0.9, 0.2), rect(5, 14, 4, 11, 0.8, 0.4), np.zeros((H, W), np.float32)
    recs = tmp_path / "masks.h5"
    write_mask_records(recs, {"FG3DCar/p1": (half, full2), "JODS/a": (empty, full2), "JODS/b": (half, full2)})
    out = tmp_path / "r.json"
    r = CliRunner().invoke(app, ["evaluate", "-d", "tss", "--root", str(root), "--protocol", "tss-coseg", "--flows", str(recs), "--json", str(out), "--csv", str(tmp_path / "r.csv")])
    assert r.exit_code == 0, r.output
    s = json.loads(out.read_text())["summary"]
    assert s["subsets"]["FG3DCar"]["iou"] == pytest.approx(75.0) and s["subsets"]["JODS"]["iou"] == pytest.approx(62.5)
    assert s["subsets"]["JODS"]["iou_src"] == pytest.approx(25.0) and s["subsets"]["JODS"]["iou_trg"] == pytest.approx(100.0)
    assert s["overall"]["iou"] == pytest.approx(100 * 4 / 6) and s["headline"]["value"] == pytest.approx(68.75)
    assert "mean over subsets" in r.stdout and "subset_mean" in (tmp_path / "r.csv").read_text()
    png = tmp_path / "co.png"
    r = CliRunner().invoke(app, ["warp", str(recs), "--pair", "r0", "--coseg", "src", "-o", str(png)])
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(np.asarray(Image.open(png)), (half > 0.5).astype(np.uint8) * 255)
    r = CliRunner().invoke(app, ["evaluate", "-d", "tss", "--root", str(root), "--protocol", "tss-coseg", "--model", "nn"])
    assert r.exit_code == 2 and "mask_head=true" in r.output


class HalfMaskPredictor:
    """Flows: none needed; masks: the left half of whatever source image it is given, the whole target."""

    name = "half"

    def predict(self, src, trg):
        raise AssertionError("co-segmentation reads predict_coseg")

    def predict_coseg(self, src, trg):
        ms = np.zeros((src.height, src.width), np.float32)
        ms[:, : src.width // 2] = 1
        return None, None, ms, np.ones((trg.height, trg.width), np.float32)


def test_flipped_pairs_get_their_source_mask_mirrored_back(tmp_path):
    root = make_tss(tmp_path / "TSS")
    pair = open_dataset("tss", root, subsets="JODS")[1]  # JODS/b, flip_gt = 1
    assert pair.flip
    left = np.zeros((H, W), np.float32)
    left[:, : W // 2] = 1
    np.testing.assert_array_equal(PredictorSource(HalfMaskPredictor(), "none").coseg(pair)[0], left)
    np.testing.assert_array_equal(PredictorSource(HalfMaskPredictor(), "gt").coseg(pair)[0], left[:, ::-1])


def test_tss_coseg_with_sfnet_mask_head_end_to_end_matches_its_own_masks(tmp_path):
    root = make_tss(tmp_path / "TSS")
    protocol = customize(get_protocol("tss-coseg"), flip="none")
    ds = open_dataset("tss", root, subsets="FG3DCar")
    predictor = ModelPredictor(build_sfnet(weights="default", mask_head=True), 64)
    run = evaluate(ds, protocol, predictor=predictor)
    pair = ds[0]
    _, _, ms, mt = predictor.predict_coseg(Image.open(pair.src_path).convert("RGB"), Image.open(pair.trg_path).convert("RGB"))
    inter, union = ((ms > 0.5) & pair.src_mask).sum(), ((ms > 0.5) | pair.src_mask).sum()
    assert run.records[0]["iou_src"] == pytest.approx(inter / union if union else 1.0)
    assert run.header["source"]["weights"].endswith("+fresh-mask-head")


def test_flow_model_writes_mask_records_that_read_back(tmp_path, mobilenet):
    from semcorr.io.records import PairRecord, read_record, write_record
    from semcorr.pipeline import FeatureExtractor, model_flow_record

    for name, size in (("a.png", (48, 40)), ("b.png", (56, 36))):
        Image.fromarray((np.random.default_rng(len(name)).random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(tmp_path / name)
    model = SFNet(mobilenet, mask_head=True).eval()
    ext = FeatureExtractor(mobilenet, list(model.required_layers), (64, 64))
    rec = model_flow_record(ext.extract_record("p", tmp_path / "a.png", tmp_path / "b.png"), model)
    assert rec.mask["src"].shape == (40, 48) and rec.mask["trg"].shape == (36, 56)
    with h5py.File(tmp_path / "r.h5", "w") as f:
        write_record(f.create_group("pairs"), rec)
    with h5py.File(tmp_path / "r.h5", "r") as f:
        back = read_record(f["pairs/p"])
    np.testing.assert_array_equal(back.mask["src"], rec.mask["src"])
    bad = PairRecord("q", "a.png", "b.png", (4, 5), (4, 5), mask={"src": np.zeros((3, 3), np.float32)})
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        write_record(f.create_group("pairs"), bad)
    with h5py.File(tmp_path / "bad.h5", "r") as f, pytest.raises(Exception, match="mask/src has shape"):
        read_record(f["pairs/q"])


def test_two_training_steps_with_the_mask_head_save_a_loadable_checkpoint(tmp_path, shared_data):
    from semcorr.train import TrainOptions, train
    from semcorr.train.feedback import read_log
    from semcorr.weights import load_checkpoint

    caltech = shared_data / "caltech-101-subset" / "101_ObjectCategories"
    opts = TrainOptions(
        model="sfnet", data=f"folder:{caltech}", out=tmp_path / "run", iterations=2, batch_size=1, image_size=64,
        checkpoint_every=2, log_every=1, limit_pairs=2, device="cpu", quiet=True, seed=0, model_options={"mask_head": True},
    )  # fmt: skip
    train(opts)
    state, meta = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert meta["config"]["mask_head"] is True and {"mask_reg_feat3.conv.weight", "mask_reg_feat4.conv.bias"} <= set(state)
    steps = [r for r in read_log(tmp_path / "run" / "log.jsonl") if r.get("event") == "step"]
    assert len(steps) == 2 and all(r["mask_regression"] > 0 for r in steps)
    model = build_sfnet(weights=tmp_path / "run" / "last.safetensors")
    assert model.mask_head_state == "trained"
