"""warp refuses an image or mask that is not the record's; --matches draws the most confident matches, titled, with a colour bar."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from semcorr.io.records import PairRecord
from semcorr.io.stream import RecordWriter
from semcorr.viz import colormap, sample_matches
from semcorr_cli.main import app

SRC_HW, TRG_HW = (20, 30), (24, 32)


def scaled_flows():
    """Exact flows between a 30x20 source and a 32x24 target that is the source stretched (corner pixels to corner pixels)."""
    (hs, ws), (ht, wt) = SRC_HW, TRG_HW
    ys, xs = np.mgrid[0:hs, 0:ws].astype(np.float32)
    st = np.stack([xs * (wt - 1) / (ws - 1), ys * (ht - 1) / (hs - 1)], -1)
    yt, xt = np.mgrid[0:ht, 0:wt].astype(np.float32)
    ts = np.stack([xt * (ws - 1) / (wt - 1), yt * (hs - 1) / (ht - 1)], -1)
    return st, ts


@pytest.fixture()
def flow_file(tmp_path):
    src, trg = tmp_path / "src.png", tmp_path / "trg.png"
    Image.new("RGB", SRC_HW[::-1], (200, 30, 30)).save(src)
    Image.new("RGB", TRG_HW[::-1], (30, 30, 200)).save(trg)
    rec = PairRecord("p0", str(src), str(trg), SRC_HW, TRG_HW)
    rec.flow["src_to_trg"], rec.flow["trg_to_src"] = scaled_flows()
    rec.flow_attrs = {"model": "sfnet"}
    rec.confidence["src_to_trg"] = np.tile(np.arange(SRC_HW[1], dtype=np.float32), (SRC_HW[0], 1))  # = x
    with RecordWriter(tmp_path / "flow.h5", "test") as w:
        w.write(rec)
    return tmp_path / "flow.h5"


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_the_records_own_images_warp(flow_file, tmp_path):
    r = run("warp", flow_file, "--image", tmp_path / "src.png", "-o", tmp_path / "w.png")
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "w.png").size == TRG_HW[::-1]
    r = run("warp", flow_file, "--image", tmp_path / "trg.png", "-o", tmp_path / "w2.png")
    assert r.exit_code == 0 and Image.open(tmp_path / "w2.png").size == SRC_HW[::-1]
    # another file of the source's size is placed by its size
    Image.new("RGB", SRC_HW[::-1]).save(tmp_path / "copy.png")
    r = run("warp", flow_file, "--image", tmp_path / "copy.png", "-o", tmp_path / "w3.png")
    assert r.exit_code == 0 and Image.open(tmp_path / "w3.png").size == TRG_HW[::-1]


def test_an_unrelated_image_is_refused_in_one_sentence_and_force_warps_it(flow_file, tmp_path):
    Image.new("RGB", (64, 48)).save(tmp_path / "other.png")
    r = run("warp", flow_file, "--image", tmp_path / "other.png", "-o", tmp_path / "x.png")
    assert r.exit_code == 1
    assert "is neither the record's source" in r.output and "(30x20)" in r.output and "--force" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "x.png").exists()
    r = run("warp", flow_file, "--image", tmp_path / "other.png", "--force", "-o", tmp_path / "x.png")
    assert r.exit_code == 0 and Image.open(tmp_path / "x.png").size == TRG_HW[::-1]
    # the record's file name, but not its size (an edited or resized copy)
    (tmp_path / "edited").mkdir()
    Image.new("RGB", (60, 40)).save(tmp_path / "edited" / "src.png")
    r = run("warp", flow_file, "--image", tmp_path / "edited" / "src.png", "-o", tmp_path / "y.png")
    assert r.exit_code == 1 and "is 60x40 but the record's source" in r.output
    # an explicit direction still checks the size
    r = run("warp", flow_file, "--image", tmp_path / "src.png", "--direction", "trg", "-o", tmp_path / "z.png")
    assert r.exit_code == 1 and "is 30x20 but the record's target" in r.output


def test_a_mask_of_the_wrong_size_is_refused_and_force_resizes_it(flow_file, tmp_path):
    Image.new("L", (64, 48), 255).save(tmp_path / "m.png")
    r = run("warp", flow_file, "--mask", tmp_path / "m.png", "-o", tmp_path / "wm.png")
    assert r.exit_code == 1 and "mask" in r.output and "--force" in r.output
    r = run("warp", flow_file, "--mask", tmp_path / "m.png", "--force", "-o", tmp_path / "wm.png")
    assert r.exit_code == 0 and np.asarray(Image.open(tmp_path / "wm.png")).shape == TRG_HW


def test_sample_matches_keeps_the_most_confident_consistent_spread_matches():
    st, ts = scaled_flows()
    conf = np.tile(np.arange(SRC_HW[1], dtype=np.float32), (SRC_HW[0], 1))  # confidence = x
    pts, moved, scores, consistent = sample_matches(st, ts, conf, grid=10, top=4, spacing=0.1)
    assert consistent == 100  # exact inverse flows: every candidate comes back
    assert len(pts) == 4 and list(scores) == sorted(scores, reverse=True)
    assert np.all(pts[:, 0] >= 20)  # the right-hand (most confident) part of the image
    d = np.hypot(*(pts[:, None] - pts[None]).transpose(2, 0, 1))
    assert d[np.triu_indices(4, 1)].min() >= 0.1 * np.hypot(*SRC_HW)  # spread out
    np.testing.assert_allclose(moved, st[np.round(pts[:, 1]).astype(int), np.round(pts[:, 0]).astype(int)])
    # a target flow that sends everything to one corner: nothing is consistent, nothing drawn
    none_pts, _, _, none = sample_matches(st, np.zeros_like(ts), conf, grid=10, top=4)
    assert none == 0 and len(none_pts) == 0
    # all: every candidate, consistent or not
    allp, _, _, _ = sample_matches(st, np.zeros_like(ts), conf, grid=10, top=None)
    assert len(allp) == 100
    # a foreground mask limits the candidates
    fg = np.zeros(SRC_HW, bool)
    fg[:, :10] = True
    fgp, _, _, _ = sample_matches(st, ts, conf, grid=10, top=30, foreground=fg)
    assert len(fgp) > 0 and np.all(fgp[:, 0] < 10)


def test_the_matches_picture_has_a_title_band_colours_by_confidence_and_a_legend(flow_file, tmp_path):
    r = run("warp", flow_file, "--image", tmp_path / "src.png", "--matches", "--top", "5", "-o", tmp_path / "m.png")
    assert r.exit_code == 0, r.output
    pic = np.asarray(Image.open(tmp_path / "m.png").convert("RGB"))
    side_by_side_w = SRC_HW[1] + 8 + TRG_HW[1]
    assert pic.shape[1] == side_by_side_w and pic.shape[0] > max(SRC_HW[0], TRG_HW[0]) + 40  # title and legend bands
    hot, cold = colormap(np.array(1.0)), colormap(np.array(0.0))
    assert (np.abs(pic.astype(int) - hot).sum(-1) < 40).any() and (np.abs(pic.astype(int) - cold).sum(-1) < 40).any()
    r = run("warp", flow_file, "--image", tmp_path / "src.png", "--top", "5", "-o", tmp_path / "n.png")
    assert r.exit_code == 2 and "--matches" in r.output
