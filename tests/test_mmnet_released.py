"""MMNet on the authors' released checkpoint layout, and its public test-time keypoint transfer.

The released files are not available here: each look-alike is written from
``shared/official-checkpoints/mmnet.json`` (every key, shape and dtype of the
authors' ResNet-101 file, the modules the forward never calls included) with
``torch.save``. Large tensors are stride-0 expansions of one random value per
output channel, so the file stays small while every tensor has its real shape
and a content of its own. The FCN-ResNet-101 layout is the same head with
gluoncvth's dilated backbone (deep stem ``conv1.0/1/3/4/6``, ``bn1`` of 128
channels, ``layer1.0`` reading 128 channels).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from conftest import SHARED
from semcorr.backbones import build_backbone
from semcorr.errors import WeightsError
from semcorr.evaluate.scoring import score_keypoints
from semcorr.images import image_to_tensor
from semcorr.models.base import Matches
from semcorr.models.mmnet import build_mmnet, map_public_state_dict, own_to_public_key, transfer_flow, transfer_points
from semcorr.pipeline import ModelPredictor
from semcorr.protocols import get_protocol
from semcorr_cli.main import app

LAYOUT_FILE = SHARED.parent / "official-checkpoints" / "mmnet.json"
UNUSED_R101 = [
    "backbone.fc",
    "conv0_down",
    "conv0_kernel",
    "conv1_kernel",
    "conv2_kernel",
    "conv3_kernel",
    "conv4_kernel",
    "feature_upsample_2",
    "feature_upsample_4",
    "msblock0",
    "upsample_4",
    "upsample_8",
    "upsample_16",
]


def parse_layout(text: str) -> tuple[list[int], torch.dtype]:
    """``"tensor [21, 42, 3, 3] float32"`` → shape and dtype."""
    kind, rest = text.split(" ", 1)
    assert kind == "tensor", text
    shape, dtype = rest.rsplit(" ", 1)
    return json.loads(shape), getattr(torch, dtype)


@pytest.fixture(scope="module")
def r101_layout() -> dict[str, tuple[list[int], torch.dtype]]:
    if not LAYOUT_FILE.is_file():
        pytest.fail(f"the released-checkpoint layouts are missing: expected {LAYOUT_FILE}")
    return {k: parse_layout(v) for k, v in json.loads(LAYOUT_FILE.read_text()).items()}


def fcn_layout(r101: dict[str, tuple[list[int], torch.dtype]]) -> dict[str, tuple[list[int], torch.dtype]]:
    """The FCN checkpoint: the same head; gluoncvth's ``resnet101(dilated=True, deep_base=True)`` as backbone."""
    f32, i64 = torch.float32, torch.int64

    def bn(prefix: str, c: int) -> dict:
        return {
            f"{prefix}.weight": ([c], f32),
            f"{prefix}.bias": ([c], f32),
            f"{prefix}.running_mean": ([c], f32),
            f"{prefix}.running_var": ([c], f32),
            f"{prefix}.num_batches_tracked": ([], i64),
        }

    out = {"backbone.conv1.0.weight": ([64, 3, 3, 3], f32), **bn("backbone.conv1.1", 64)}
    out.update({"backbone.conv1.3.weight": ([64, 64, 3, 3], f32), **bn("backbone.conv1.4", 64)})
    out.update({"backbone.conv1.6.weight": ([128, 64, 3, 3], f32), **bn("backbone.bn1", 128)})
    for k, (shape, dtype) in r101.items():
        if k.startswith(("backbone.conv1.", "backbone.bn1.")):
            continue
        if k in ("backbone.layer1.0.conv1.weight", "backbone.layer1.0.downsample.0.weight"):
            shape = [shape[0], 128, 1, 1]
        out[k] = (shape, dtype)
    return out


def lookalike(layout: dict[str, tuple[list[int], torch.dtype]], seed: int) -> dict[str, torch.Tensor]:
    """Random tensors of exactly the layout's keys, shapes and dtypes (see the module doc)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, (shape, dtype) in layout.items():
        if dtype == torch.int64:
            state[k] = torch.tensor(1234, dtype=dtype).expand(shape) if shape else torch.tensor(1234)
        elif "running_var" in k:
            state[k] = 0.5 + torch.rand(shape, generator=g)
        elif "running_mean" in k or k.endswith(".bias"):
            state[k] = 0.05 * torch.randn(shape, generator=g)
        elif len(shape) == 1:  # BatchNorm scale
            state[k] = 0.3 + 0.3 * torch.rand(shape, generator=g)
        else:
            fan_in = math.prod(shape[1:])
            per_out = torch.randn(shape[0], generator=g) / fan_in  # a constant row: keep the mean, not the norm
            small = math.prod(shape) <= 8192
            state[k] = (
                torch.randn(shape, generator=g) / math.sqrt(fan_in)
                if small
                else per_out.view(-1, *[1] * (len(shape) - 1)).expand(shape)
            )
    return state


@pytest.fixture(scope="module")
def released_r101(tmp_path_factory, r101_layout) -> Path:
    path = tmp_path_factory.mktemp("mmnet") / "ckp_pascal_res101.pth"
    torch.save(lookalike(r101_layout, 0), path)
    return path


@pytest.fixture(scope="module")
def loaded_r101(released_r101):
    return build_mmnet("resnet101", weights=released_r101)


def pair(h=64, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, h, w, generator=g), torch.randn(1, 3, h, w, generator=g)


# ----------------------------------------------------------------------------- loading


def test_the_lookalike_has_the_recorded_layout(released_r101, r101_layout):
    state = torch.load(released_r101, weights_only=True)
    assert list(state) == list(r101_layout)
    for k, v in state.items():
        assert (list(v.shape), v.dtype) == r101_layout[k], k
    assert state["upsample_4.weight"].shape == (1120, 4480, 4, 4)  # a module the forward never calls


def test_released_resnet101_loads_every_weight_and_names_the_unused_ones_in_one_line(released_r101, r101_layout, caplog):
    with caplog.at_level(logging.WARNING, logger="semcorr.models.mmnet"):
        model = build_mmnet("resnet101", weights=released_r101)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "ignored 28 weights of modules the MMNet forward never calls" in lines[0]
    assert all(name in lines[0] for name in UNUSED_R101)
    state = torch.load(released_r101, weights_only=True)
    own = model.state_dict()
    for k, v in own.items():
        assert torch.equal(v, state[own_to_public_key(k, model.backbone)]), k
    used = {own_to_public_key(k, model.backbone) for k in own}
    assert len(used) == len(r101_layout) - 28
    assert own_to_public_key("encoder.attention.1.key.weight", model.backbone) == "wa_2.conv_phi.weight"
    assert own_to_public_key("encoder.fusion.fuse.0.bias", model.backbone) == "conv1_scale.bias"
    assert own_to_public_key("encoder.fusion.upsample.2.weight", model.backbone) == "feat_upsample_4.weight"
    assert own_to_public_key("encoder.enhance.2.blocks.22.dilated.2.weight", model.backbone) == "msblock3_23.conv3.weight"
    assert model.weights_id.startswith("released-file:ckp_pascal_res101.pth:")
    assert model.backbone.weights_id == model.weights_id


def test_convert_weights_gives_the_same_model_as_weights(tmp_path, released_r101, loaded_r101):
    out = tmp_path / "mmnet_r101.safetensors"
    r = CliRunner().invoke(app, ["convert-weights", "--model", "mmnet", "--backbone", "resnet101", str(released_r101), str(out), "-q"])
    assert r.exit_code == 0, r.output
    converted = build_mmnet("resnet101", weights=out)
    a, b = pair()
    with torch.no_grad():
        expected = loaded_r101(a, b)
        got = converted(a, b)
    assert torch.isfinite(expected.corr).all() and expected.corr.abs().max() > 0
    torch.testing.assert_close(got.corr, expected.corr, rtol=0, atol=0)
    torch.testing.assert_close(got.src_to_trg, expected.src_to_trg, rtol=0, atol=0)
    torch.testing.assert_close(got.trg_to_src, expected.trg_to_src, rtol=0, atol=0)


def test_released_layout_errors_name_the_public_key(loaded_r101, released_r101, tmp_path):
    state = torch.load(released_r101, weights_only=True)
    broken = dict(state)
    del broken["wa_2.conv_phi.weight"]
    with pytest.raises(WeightsError, match="wa_2.conv_phi.weight"):
        map_public_state_dict(broken, loaded_r101)
    extra = dict(state, **{"attention1.query_conv.weight": torch.zeros(10, 21, 1, 1)})  # the old, invented names
    with pytest.raises(WeightsError, match="attention1.query_conv.weight"):
        map_public_state_dict(extra, loaded_r101)
    wrong = dict(state, **{"conv3_scale.weight": torch.zeros(21, 40, 3, 3)})
    with pytest.raises(WeightsError, match="conv3_scale.weight"):
        map_public_state_dict(wrong, loaded_r101)
    with pytest.raises(WeightsError, match="backbone.conv1.0.weight"):  # a ResNet-101 file for the FCN backbone
        build_mmnet("fcn_resnet101", weights=released_r101)
    # anything but plain tensors is refused, never unpickled
    path = tmp_path / "pickled.pth"
    torch.save({"msblock1_1.conv.bias": torch.zeros(32), "args": logging.getLogger("x")}, path)
    with pytest.raises(WeightsError, match="weights only"):
        build_mmnet("resnet101", weights=path)


# ----------------------------------------------------------------------------- the FCN backbone


def test_fcn_backbone_keys_dilations_and_strides(r101_layout):
    bb = build_backbone("fcn_resnet101", "empty")  # structure only: no seconds of random init
    net_keys = {k for k in fcn_layout(r101_layout) if k.startswith("backbone.") and not k.startswith("backbone.fc.")}
    from semcorr.models.mmnet import MMNet

    model = MMNet(bb)
    public = {own_to_public_key(k, bb): tuple(v.shape) for k, v in model.state_dict().items() if k.startswith("backbone.")}
    assert set(public) == net_keys
    layout = fcn_layout(r101_layout)
    assert all(public[k] == tuple(layout[k][0]) for k in public)
    assert [bb.stride(f"layer{s}") for s in (1, 2, 3, 4)] == [4, 8, 8, 8]
    assert model.strides == [4, 8, 8, 8]
    blocks = dict(zip(bb.stage_names, bb.stages))
    # gluoncvth's pattern: each dilated stage's first block keeps the previous dilation
    assert [blocks[f"layer3.{i}"].conv2.dilation[0] for i in (0, 1, 22)] == [1, 2, 2]
    assert [blocks[f"layer4.{i}"].conv2.dilation[0] for i in (0, 1, 2)] == [2, 4, 4]
    assert all(blocks[f"layer{s}.0"].conv2.stride == (1, 1) for s in (3, 4))
    assert blocks["layer2.0"].conv2.stride == (2, 2)
    with pytest.raises(WeightsError, match="no weights for fcn_resnet101"):
        build_backbone("fcn_resnet101", "default")


def test_released_fcn_lookalike_loads_and_skips_the_upsampling_between_stride8_stages(tmp_path, r101_layout, caplog):
    path = tmp_path / "ckp_pascal_fcnres101.pth"
    torch.save(lookalike(fcn_layout(r101_layout), 1), path)
    with caplog.at_level(logging.WARNING, logger="semcorr.models.mmnet"):
        model = build_mmnet("fcn_resnet101", weights=path)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "ignored 30 weights" in line and "feat_upsample_3" in line and "feat_upsample_4" in line
    assert [type(u).__name__ for u in model.encoder.fusion.upsample] == ["ConvTranspose2d", "Identity", "Identity"]
    a, b = pair(64, 96)
    with torch.no_grad():
        maps_a, maps_b = model.encode_images(a, b)
        vols = model.volumes(maps_a, maps_b)
    assert [tuple(v.shape) for v in vols] == [(1, 16, 24, 16, 24)] + [(1, 8, 12, 8, 12)] * 3
    assert all(torch.isfinite(v).all() for v in vols)
    out = tmp_path / "fcn.safetensors"
    r = CliRunner().invoke(app, ["convert-weights", "--model", "mmnet", "--backbone", "fcn_resnet101", str(path), str(out), "-q"])
    assert r.exit_code == 0, r.output
    converted = build_mmnet("fcn_resnet101", weights=out)
    with torch.no_grad():
        again = converted.volumes(*converted.encode_images(a, b))
    assert all(torch.equal(x, y) for x, y in zip(again, vols))


# ----------------------------------------------------------------------------- test-time transfer


def test_transfer_interpolates_scores_then_takes_the_argmax_cell_corner():
    """A 2×2 source grid over a 2×3 target grid, source image 20×20, target 30×60 (H×W).

    Source cell (0, 0) prefers target cell (0, 0), cell (0, 1) prefers (1, 2). The
    point x = 7 px lies at x·w/W = 0.7 cells: its row is 0.3·row₀₀ + 0.7·row₀₁,
    whose best cell is (1, 2) → pixel (2·60/3, 1·30/2) = (40, 15) — the cell's
    corner, not its centre. A nearest-cell rule would answer (0, 0).
    """
    corr = torch.zeros(2, 2, 2, 3)
    corr[0, 0, 0, 0] = 1.0
    corr[0, 1, 1, 2] = 0.6
    corr[1, 0, 0, 1] = 5.0  # the next row is never read at y = 0
    got = transfer_points(corr, torch.tensor([[7.0, 0.0], [2.0, 0.0], [19.0, 0.0], [float("nan"), 1.0]]), (20, 20), (30, 60))
    # 0.3·1 = 0.3 at (0,0) vs 0.7·0.6 = 0.42 at (1,2); x = 2 → 0.2 cells: 0.8 vs 0.12;
    # x = 19 → 1.9 cells: no column 2, so column 1's row alone (0.6 at (1,2))
    expected = np.array([[40.0, 15.0], [0.0, 0.0], [40.0, 15.0], [np.nan, np.nan]])
    np.testing.assert_array_equal(got.numpy(), expected)
    flow = transfer_flow(corr, (20, 20), (30, 60))
    assert flow.shape == (20, 20, 2) and flow.dtype == torch.float32
    assert flow[0, 7].tolist() == [40.0, 15.0] and flow[0, 2].tolist() == [0.0, 0.0]


def test_mmnet_flows_and_evaluation_use_the_public_transfer(loaded_r101):
    m = loaded_r101
    a, b = pair(64, 64, seed=3)
    with torch.no_grad():
        out = m(a, b)
    src_size, trg_size = (50, 70), (60, 40)
    st, ts = m.pixel_flows(out, src_size, trg_size)
    torch.testing.assert_close(st[0], transfer_flow(out.corr[0], src_size, trg_size))
    torch.testing.assert_close(ts[0], transfer_flow(out.corr[0].permute(2, 3, 0, 1), trg_size, src_size))
    points = torch.tensor([[3.25, 4.5], [69.0, 49.0]], dtype=torch.float64)
    moved = m.transfer_keypoints(out, points, "src->trg", src_size, trg_size)
    torch.testing.assert_close(moved, transfer_points(out.corr[0], points, src_size, trg_size))
    # soft matching has no rule of its own: the evaluation samples the flow
    soft = Matches(out.src_to_trg, out.trg_to_src, out.corr)
    m.matching = "soft-argmax"
    try:
        assert m.transfer_keypoints(soft, points, "src->trg", src_size, trg_size) is None
    finally:
        m.matching = "argmax"


class _Pair:
    pair_id, src_size, trg_size, src_bbox, trg_bbox = "p", (10, 10), (10, 10), None, None
    src_kps = np.array([[2.4, 3.6], [np.nan, np.nan]])
    trg_kps = np.array([[5.0, 5.0], [1.0, 1.0]])


def test_score_keypoints_moves_the_points_with_the_models_transfer_when_given():
    flow = np.zeros((10, 10, 2), np.float32)  # the flow sends everything to (0, 0)
    protocol = get_protocol("custom")
    seen = []

    def transfer(points, direction):
        seen.append((points.copy(), direction))
        return points + 0.5

    with_rule = score_keypoints(_Pair(), flow, flow, protocol, transfer)
    assert with_rule["errors"][0] == pytest.approx(math.hypot(5.0 - 2.9, 5.0 - 4.1))
    assert with_rule["errors"][1] is None and with_rule["n"] == 1
    assert seen[0][1] == "src->trg" and np.isnan(seen[0][0][1]).all()
    assert score_keypoints(_Pair(), flow, flow, protocol)["errors"][0] == pytest.approx(math.hypot(5.0, 5.0))


def test_mmnet_predictor_resizes_like_the_public_dataset_code(loaded_r101):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (45, 70, 3), dtype=np.uint8))
    t = torch.tensor(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    expected = F.interpolate(((t - mean) / std)[None], size=(32, 48), mode="bilinear", align_corners=False)
    torch.testing.assert_close(image_to_tensor(img, (32, 48), "tensor"), expected)
    assert not torch.allclose(image_to_tensor(img, (32, 48)), expected, atol=1e-3)  # PIL's antialiased resize differs
    assert loaded_r101.input_resize == "tensor"
    st, ts, transfer = ModelPredictor(loaded_r101, (32, 48)).predict_with_transfer(img, img)
    assert st.shape == (45, 70, 2) and ts.shape == (45, 70, 2)
    q = np.array([[10.0, 20.0], [0.0, 44.0]])
    np.testing.assert_allclose(transfer(q, "src->trg"), st[q[:, 1].astype(int), q[:, 0].astype(int)], atol=1e-4)


def _public_rule(corr: torch.Tensor, x: float, y: float, src_size, trg_size) -> list[float]:
    """predict_kps for one point, written out as the public code does it (math.modf, python floats)."""
    ha, wa, hb, wb = corr.shape
    x, y = x * wa / float(src_size[1]), y * ha / float(src_size[0])
    xf, xi = math.modf(x)
    yf, yi = math.modf(y)
    xi, yi = int(xi), int(yi)
    res1 = corr[yi, xi]
    if yi + 1 <= ha - 1:
        res1 = (1 - yf) * res1 + yf * corr[yi + 1, xi]
    res2 = None
    if xi + 1 <= wa - 1:
        res2 = corr[yi, xi + 1]
    if yi + 1 <= ha - 1 and xi + 1 <= wa - 1:
        res2 = (1 - yf) * res2 + yf * corr[yi + 1, xi + 1]
    row = res1 if res2 is None else (1 - xf) * res1 + xf * res2
    i = int(torch.max(row.reshape(1, -1), dim=1)[1])
    return [(i % wb) * trg_size[1] / wb, (i // wb) * trg_size[0] / hb]


@pytest.mark.parametrize("kind", ["gaussian", "peaked", "ties"])
def test_transfer_equals_the_public_rule_point_by_point(kind):
    g = torch.Generator().manual_seed(7)
    corr = torch.randn(6, 7, 5, 8, generator=g)
    if kind == "peaked":  # one strong peak per source cell, as trained volumes have
        corr = corr + 20 * F.one_hot(torch.randint(0, 40, (6, 7), generator=g), 40).view(6, 7, 5, 8)
    if kind == "ties":  # small integers: equal scores everywhere, the first cell must win
        corr = torch.randint(0, 3, (6, 7, 5, 8), generator=g).float()
    src, trg = (45, 70), (52, 33)
    pts = torch.stack([torch.rand(300, generator=g) * 69, torch.rand(300, generator=g) * 44], 1).double()
    pts[:60] = pts[:60].round()
    pts[60] = torch.tensor([69.0, 44.0], dtype=torch.float64)
    got = transfer_points(corr, pts, src, trg).numpy()
    expected = np.array([_public_rule(corr, float(x), float(y), src, trg) for x, y in pts.tolist()])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_fcn_backbone_loads_from_a_gluoncvth_fcn_file(tmp_path):
    """A whole FCN checkpoint (``pretrained.*`` backbone, ``head.*``/``auxlayer.*`` heads) gives its backbone."""
    net = build_backbone("fcn_resnet101", "empty")
    g = torch.Generator().manual_seed(2)
    own = {k: torch.randn(1, generator=g).expand(v.shape) if v.is_floating_point() else v.zero_() for k, v in net.state_dict().items()}
    # our stage names → gluoncvth's: stages.0.0 = conv1 (Sequential), stages.0.1 = bn1, stages.N = layer*.i
    from semcorr.models.mmnet import own_to_public_key

    public = {own_to_public_key("backbone." + k, net)[len("backbone.") :]: v for k, v in own.items()}
    path = tmp_path / "fcn_resnet101_voc.pth"
    torch.save({**{"pretrained." + k: v for k, v in public.items()}, "head.conv5.0.weight": torch.zeros(512, 2048, 3, 3)[:1]}, path)
    loaded = build_backbone("fcn_resnet101", str(path))
    assert loaded.weights_id.startswith("file:fcn_resnet101_voc.pth:")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in own.items())
    public.pop("conv1.6.weight")
    torch.save(public, path)
    with pytest.raises(WeightsError, match="conv1.6.weight"):
        build_backbone("fcn_resnet101", str(path))


def test_released_checkpoint_through_the_cli_pipe_equals_the_predictor(tmp_path, released_r101, loaded_r101):
    """extract --model mmnet --weights FILE | flow --model mmnet --weights FILE gives the predictor's flows."""
    from conftest import willow_image
    from semcorr.images import load_image
    from semcorr.io.stream import iter_records

    a, b = willow_image("Cars_006a.png"), willow_image("Cars_007a.png")
    common = ["--model", "mmnet", "--weights", str(released_r101)]
    r = CliRunner().invoke(app, ["extract", str(a), str(b), *common, "--backbone", "resnet101", "--size", "64", "-q"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["flow", *common, "-o", str(tmp_path / "f.h5"), "-q"], input=r.stdout_bytes)
    assert r.exit_code == 0, r.output
    (rec,) = list(iter_records(tmp_path / "f.h5"))
    st, ts = ModelPredictor(loaded_r101, 64).predict(load_image(a), load_image(b))
    # extract runs both images in one batch, the predictor one at a time: rounding may flip a near-tie
    for got, expected in ((rec.flow["src_to_trg"], st), (rec.flow["trg_to_src"], ts)):
        assert got.shape == expected.shape
        assert (np.abs(got - expected).max(-1) < 1e-4).mean() > 0.999
    assert rec.flow_attrs["weights"] == loaded_r101.weights_id
