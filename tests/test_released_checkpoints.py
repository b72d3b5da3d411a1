"""NC-Net, DCCNet and SFNet checkpoints in the exact released layout load through --weights and convert-weights.

The look-alikes (:mod:`released_layouts`) carry every key, shape, dtype and
nesting of the authors' files, the pre-permuted Conv4d weights, the
``argparse.Namespace``, the numpy loss histories and the optimizer state.
Each is loaded by ``refine --weights FILE`` (the CLI), converted by
``convert-weights``, and the two routes must give the same outputs; the
loaded weights must be the file's, un-permuted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from semcorr.models.official import conv4d_weight_from_official
from released_layouts import lookalike_checkpoint, released_layout, tensor_entries

from helpers_4d import one_thread  # noqa: F401 - autouse


def _features_records(tmp_path: Path, channels: int = 1024, cells: int = 4) -> Path:
    from semcorr.io.records import PairRecord
    from semcorr.io.stream import write_records

    g = torch.Generator().manual_seed(5)
    rec = PairRecord("pair0", "a.png", "b.png", (64, 64), (64, 64))
    for side in ("src", "trg"):
        rec.features[side]["layer3"] = torch.randn(channels, cells, cells, generator=g).numpy()
    rec.feature_attrs["layer3"] = {"backbone": "resnet101", "weights": "test", "stride": 16}
    path = tmp_path / "feats.h5"
    write_records(path, [rec], "test")
    return path


@pytest.fixture(scope="module", params=["ncnet", "dccnet"])
def released(request, tmp_path_factory):
    model = request.param
    tmp = tmp_path_factory.mktemp(model)
    path = tmp / f"{model}_pfpascal.pth.tar"
    # larger consensus weights than the default look-alike scale, so the head's output is far from uniform
    values = {
        k: torch.randn(shape, generator=torch.Generator().manual_seed(i)) * 0.2
        for i, (k, (shape, _)) in enumerate(tensor_entries(model).items())
        if "FeatureExtraction" not in k and "conv" in k and k.endswith("weight")
    }
    obj = lookalike_checkpoint(model, path, seed=1, values=values)
    return model, path, obj, tmp


def test_the_layout_is_the_released_one(released):
    model, path, obj, _ = released
    layout = released_layout(model)
    raw = torch.load(path, weights_only=False)  # our own file: full load to inspect it
    assert sorted(raw) == sorted({k.partition("/")[0] for k in layout})
    assert type(raw["args"]).__name__ == "Namespace" and isinstance(raw["train_loss"], np.ndarray)
    prefix = "module." if model == "dccnet" else ""
    assert f"{prefix}NeighConsensus.conv.0.weight" in raw["state_dict"]
    assert raw["state_dict"][f"{prefix}NeighConsensus.conv.0.weight"].shape == (5, 16, 1, 5, 5, 5)  # (k, out, in, k, k, k)


def test_released_file_loads_with_its_weights_in_place(released):
    from semcorr.models import build_model

    model, path, obj, _ = released
    net = build_model(model, backbone="resnet101", weights=str(path))  # backbone from the file
    sd = obj["state_dict"]
    prefix = "module." if model == "dccnet" else ""
    for i in (0, 2, 4):
        stored = sd[f"{prefix}NeighConsensus.conv.{i}.weight"]
        assert torch.equal(net.refine.neigh_consensus.conv[i].weight, conv4d_weight_from_official(stored))
        assert torch.equal(net.refine.neigh_consensus.conv[i].weight, stored.permute(1, 2, 0, 3, 4, 5))
    conv1 = sd[f"{prefix}FeatureExtraction.model.0.weight"]
    assert torch.equal(net.backbone.state_dict()["stages.0.0.weight"], conv1)
    if model == "dccnet":
        assert torch.equal(net.context.embedding[0].weight, sd["module.SpatialContextEncoder.embeddingFea.0.weight"])
        assert net.context_kernel_size == 25 and net.fusion_grid == (25, 25)
        assert torch.equal(net.fusion.attention.weight, sd["module.DynamicFusionNet.att.0.weight"])
        for i in (0, 2, 4):
            stored = sd[f"module.DynamicFusionNet.extract_corrfeas.conv.{i}.weight"]
            assert torch.equal(net.fusion.embed.conv[i].weight, stored.permute(1, 2, 0, 3, 4, 5))


def test_refine_with_the_released_file_equals_its_conversion(released):
    from semcorr.io.stream import iter_records
    from semcorr_cli.main import app

    model, path, _, tmp = released
    feats = _features_records(tmp)
    run = lambda *a: CliRunner().invoke(app, [*a])  # noqa: E731
    res = run("refine", str(feats), "--model", model, "--weights", str(path), "-o", str(tmp / "direct.h5"), "-q", "--device", "cpu")
    assert res.exit_code == 0, res.output
    res = run("convert-weights", "--model", model, "--backbone", "resnet101", str(path), str(tmp / "conv.safetensors"), "-q")
    assert res.exit_code == 0, res.output
    res = run("refine", str(feats), "--model", model, "--weights", str(tmp / "conv.safetensors"), "-o", str(tmp / "conv.h5"), "-q", "--device", "cpu")
    assert res.exit_code == 0, res.output
    (a,), (b,) = list(iter_records(tmp / "direct.h5")), list(iter_records(tmp / "conv.h5"))
    assert a.corr.shape == (4, 4, 4, 4) and np.isfinite(a.corr).all()
    assert np.array_equal(a.corr, b.corr)
    assert a.corr.std() > 1e-3 * np.abs(a.corr).max()  # not a constant volume
    for key in a.extra:
        assert np.array_equal(a.extra[key], b.extra[key]), key
    assert a.corr_attrs["weights"].startswith("released-") and b.corr_attrs["weights"].startswith("file:conv.safetensors")
    if model == "dccnet":
        assert set(a.extra) == {"dccnet/fusion_src_to_trg", "dccnet/fusion_trg_to_src", "dccnet/fused_trg_to_src"}


def test_sfnet_lookalike_fixture_is_the_released_layout():
    # test_sfnet_released.py writes a small (stride-0) look-alike of best_checkpoint.pt; it must have
    # exactly the released keys, shapes and dtypes.
    from test_sfnet_released import adaptation_state

    layout = tensor_entries("sfnet")
    built = {f"state_dict1/{k}": v for k, v in adaptation_state(1024, 5, 0).items()}
    built.update({f"state_dict2/{k}": v for k, v in adaptation_state(2048, 3, 1).items()})
    assert list(built) == list(layout)
    for key, (shape, dtype) in layout.items():
        assert tuple(built[key].shape) == shape and str(built[key].dtype) == f"torch.{dtype}", key
