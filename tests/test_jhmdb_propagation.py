"""JHMDB reader and keypoint propagation (jhmdb-sfnet) on a look-alike in the published layout."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image
from typer.testing import CliRunner

from semcorr.datasets import open_dataset
from semcorr.errors import DataError, UsageError
from semcorr.evaluate import evaluate
from semcorr.pipeline import IdentityPredictor
from semcorr.propagate import carry_points, propagate
from semcorr.protocols import customize, get_protocol
from semcorr_cli.main import app

W, H = 40, 30
J = np.array([(4 + 2 * j, 6 + j) for j in range(15)], dtype=np.float64)  # 0-based; box 28 × 14


def walk_joints() -> np.ndarray:
    """Clip walk/a: 3 frames, every joint 2 px to the right per frame; joint 15 unannotated in frame 3."""
    pos = np.stack([J + (2 * t, 0) for t in range(3)])
    pos[2, 14] = np.nan
    return pos


def jump_joints() -> np.ndarray:
    """Clip jump/b: 2 frames, no motion; joint 1 outside the frame (x = -2)."""
    pos = np.stack([J, J])
    pos[:, 0] = (-2.0, 5.0)
    return pos


def write_clip(root: Path, action: str, clip: str, joints: np.ndarray) -> None:
    frames = root / "Rename_Images" / action / clip
    frames.mkdir(parents=True)
    for t in range(len(joints)):
        Image.new("RGB", (W, H), (30 * t, 0, 0)).save(frames / f"{t + 1:05d}.png")
    mat = root / "joint_positions" / action / clip
    mat.mkdir(parents=True)
    scipy.io.savemat(mat / "joint_positions.mat", {"pos_img": np.transpose(joints + 1, (2, 1, 0)), "scale": np.ones(len(joints))})


def make_jhmdb(root: Path) -> Path:
    write_clip(root, "walk", "a", walk_joints())
    write_clip(root, "jump", "b", jump_joints())
    write_clip(root, "jump", "c", jump_joints())
    (root / "splits").mkdir()
    (root / "splits" / "walk_test_split1.txt").write_text("a.avi 2\n")
    (root / "splits" / "jump_test_split1.txt").write_text("b.avi 2\nc.avi 1\n")
    (root / "splits" / "jump_test_split2.txt").write_text("b.avi 1\nc.avi 2\n")
    return root


def test_reader_clips_joints_and_splits(tmp_path):
    root = make_jhmdb(tmp_path)
    ds = open_dataset("jhmdb", root)
    assert [e.pair_id for e in ds.entries] == ["jump/b", "walk/a"] and ds.categories == ["jump", "walk"]
    clip = ds[1]
    assert len(clip) == 3 and clip.size == (H, W) and clip.category == "walk"
    assert clip.frame_names[0] == "Rename_Images/walk/a/00001.png"
    np.testing.assert_allclose(clip.keypoints[1], J + (2, 0))  # pos_img is 1-based: 1 subtracted
    assert np.isnan(clip.keypoints[2, 14]).all()
    assert [e.pair_id for e in open_dataset("jhmdb", root, split="train").entries] == ["jump/c"]
    assert [e.pair_id for e in open_dataset("jhmdb", root, fold=2).entries] == ["jump/c"]
    with pytest.raises(DataError, match="split file"):
        open_dataset("jhmdb", root, fold=3)
    with pytest.raises(UsageError):
        open_dataset("jhmdb", root, fold=4)
    with pytest.raises(DataError, match="Rename_Images"):
        open_dataset("jhmdb", tmp_path / "splits")


def test_carry_and_propagate_modes():
    shift = np.zeros((H, W, 2)) + np.stack(np.meshgrid(np.arange(W), np.arange(H)), -1) + (2.0, 1.0)
    pts = np.array([[3.0, 4.0], [-2.0, 5.0], [np.nan, np.nan]])
    np.testing.assert_allclose(carry_points(pts, shift)[:2], [[5, 5], [0, 6]])  # outside: the border's flow, offset kept
    assert np.isnan(carry_points(pts, shift)[2]).all()
    identity = shift - (2.0, 1.0)
    np.testing.assert_array_equal(carry_points(pts[:2], identity), pts[:2])
    first = propagate(pts[:1], 3, lambda a, b: identity + (2.0 * (b - a), 0), "first")
    chain = propagate(pts[:1], 3, lambda a, b: identity + (2.0, 0), "chain")
    np.testing.assert_allclose(first[:, 0], [[3, 4], [5, 4], [7, 4]])
    np.testing.assert_allclose(chain[:, 0], [[3, 4], [5, 4], [7, 4]])
    with pytest.raises(UsageError):
        propagate(pts, 2, lambda a, b: identity, "sideways")


def test_identity_baseline_scores_exactly_what_copying_gives(tmp_path):
    root = make_jhmdb(tmp_path)
    protocol = get_protocol("jhmdb-sfnet")
    ds = open_dataset("jhmdb", root, **protocol.options())
    run = evaluate(ds, protocol, predictor=IdentityPredictor())
    for rec, clip in zip(run.records, ds):
        for f in rec["frames"]:
            copied = np.linalg.norm(clip.keypoints[f["t"]] - clip.keypoints[0], axis=1)
            got = np.array([np.nan if e is None else e for e in f["errors"]])
            np.testing.assert_allclose(got, copied, atol=1e-9)  # NaN where the frame lacks the joint
    # walk/a: frame 2 errors 2 (L = 0.6·√(28² + 14²) = 18.78), frame 3 errors 4 over 14 joints (L = 0.6·√(26² + 13²) = 17.44);
    # jump/b: frame 2 errors 0 (the joint outside the frame included).
    # α = 0.1: walk 0/15, 0/14; jump 15/15.  α = 0.2: walk 15/15, 0/14; jump 15/15.
    s = run.summary
    walk = s["categories"]["walk"]
    assert walk["n_pairs"] == 2 and walk["n_keypoints"] == 29 and walk["n_clips"] == 1
    assert walk["pck_pair"] == pytest.approx({"0.1": 0.0, "0.2": 50.0})
    assert walk["pck_keypoint"] == pytest.approx({"0.1": 0.0, "0.2": 100 * 15 / 29})
    assert walk["pck_joint"] == pytest.approx({"0.1": 0.0, "0.2": (14 * 50 + 100) / 15})  # joint 15: its one frame correct
    o = s["overall"]
    assert o["n_clips"] == 2 and o["n_pairs"] == 3
    assert o["pck_keypoint"] == pytest.approx({"0.1": 100 * 15 / 44, "0.2": 100 * 30 / 44})
    assert o["pck_joint"]["0.2"] == pytest.approx((14 * 100 * 2 / 3 + 100) / 15)
    assert s["headline"] == {"alpha": 0.1, "average": "joint", "value": pytest.approx(o["pck_joint"]["0.1"])}
    assert len(s["joints"]) == 15


def write_frame_flows(path: Path, shifts: dict[tuple[int, int], float]) -> None:
    """Records for walk/a's frame pairs: x shifted by ``shifts[(a, b)]`` pixels (absolute pixel flows)."""
    grid = np.stack(np.meshgrid(np.arange(W), np.arange(H)), -1).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.attrs["semcorr_format"] = 1
        for k, ((a, b), dx) in enumerate(shifts.items()):
            g = f.create_group(f"pairs/r{k}")
            g.attrs["src_path"] = f"Rename_Images/walk/a/{a + 1:05d}.png"
            g.attrs["trg_path"] = f"Rename_Images/walk/a/{b + 1:05d}.png"
            g.attrs["src_size"] = g.attrs["trg_size"] = np.array([H, W])
            g.create_dataset("flow/src_to_trg", data=grid + np.float32([dx, 0]))
            g.create_dataset("flow/trg_to_src", data=grid - np.float32([dx, 0]))


def test_first_and_chain_read_their_own_frame_pairs(tmp_path):
    # the flow frame 1 → 3 is wrong on purpose (2 px instead of 4): only the first-frame mode reads it
    root = make_jhmdb(tmp_path)
    flows = tmp_path / "flows.h5"
    write_frame_flows(flows, {(0, 1): 2.0, (1, 2): 2.0, (0, 2): 2.0})
    runner = CliRunner()
    for mode, expected in (("first", {"0.1": 50.0, "0.2": 100.0}), ("chain", {"0.1": 100.0, "0.2": 100.0})):
        out = tmp_path / f"{mode}.json"
        args = ["evaluate", "-d", "jhmdb", "--root", str(root), "-O", "actions=walk", "--flows", str(flows), "--json", str(out)]
        r = runner.invoke(app, args + (["--propagation", mode] if mode == "chain" else []))
        assert r.exit_code == 0, r.output
        rep = json.loads(out.read_text())
        assert rep["protocol"]["propagation"] == mode and rep["protocol"]["name"] == ("jhmdb-sfnet" if mode == "first" else "jhmdb-sfnet+")
        assert rep["summary"]["overall"]["pck_pair"] == pytest.approx(expected)
    assert "jnt*" in r.stdout and "walk" in r.stdout


def test_propagation_protocol_rules():
    p = get_protocol("jhmdb-sfnet")
    assert p.threshold == "kps-diag" and p.alphas == (0.1, 0.2) and p.options() == {"fold": 1, "coords": "one-based"}
    assert "propagation" not in get_protocol("spair-71k").to_dict()  # other tasks' results headers are unchanged
    with pytest.raises(UsageError):
        customize(p, direction="trg->src")
    with pytest.raises(UsageError):
        customize(get_protocol("custom"), average="joint")


def test_propagate_command_writes_a_csv_per_frame_and_a_contact_sheet(tmp_path):
    frames = tmp_path / "clip"
    frames.mkdir()
    for name in ("f10.png", "f02.png", "f03.png"):  # taken in name order: f02, f03, f10
        Image.new("RGB", (W, H), (200, 200, 200)).save(frames / name)
    (tmp_path / "first.csv").write_text("x,y\n3.5,4\n-2,5\n")
    out = tmp_path / "out"
    runner = CliRunner()
    r = runner.invoke(app, ["propagate", str(frames), "--points", str(tmp_path / "first.csv"), "-o", str(out), "--model", "identity", "--mode", "chain"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["contact_sheet.png", "f02.csv", "f03.csv", "f10.csv"]
    for name in ("f02.csv", "f10.csv"):  # identity: every frame keeps the first frame's points, outside ones too
        assert (out / name).read_text() == "x,y\n3.500,4.000\n-2.000,5.000\n"
    with Image.open(out / "contact_sheet.png") as im:
        assert im.size == (3 * 244 + 4, 180 + 14 + 8)  # 3 thumbnails 240 × 180 in a row, captions above
        assert im.getpixel((4 + 3.5 * 6, 4 + 14 + 4 * 6)) != (200, 200, 200)  # point 1 drawn on frame 1
    r = runner.invoke(app, ["propagate", str(frames), "--points", str(tmp_path / "first.csv"), "-o", str(out), "--mode", "back"])
    assert r.exit_code == 2 and "--mode" in r.output
    (frames / "f03.png").unlink(), (frames / "f10.png").unlink()
    r = runner.invoke(app, ["propagate", str(frames), "--points", str(tmp_path / "first.csv"), "-o", str(out), "--model", "identity"])
    assert r.exit_code == 1 and "at least two frames" in r.output
