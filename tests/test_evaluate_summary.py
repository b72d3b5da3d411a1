"""Summaries (SPair-71k breakdown, masks), protocol presets, reports (JSON, CSV, PNG)."""

import csv
import json

import pytest
from PIL import Image

from semcorr.errors import UsageError
from semcorr.evaluate import EvaluationRun, draw_curves, summarize, write_csv, write_json, write_plot
from semcorr.evaluate.results import make_header
from semcorr.protocols import PRESETS, Protocol, customize, default_protocol, get_protocol, protocols_for

SPAIR = get_protocol("spair-71k")


def kp_record(category, errors, L=100.0, **meta):
    return {"index": 0, "pair_id": "p", "category": category, "L": L, "errors": errors, "n": sum(e is not None for e in errors), "meta": meta}


def test_spair_breakdown_by_difficulty():
    recs = [
        kp_record("cat", [1.0, 20.0], viewpoint_variation=0, scale_variation=0, truncation=0, occlusion=0),  # 50% at 0.1
        kp_record("cat", [1.0, 1.0], viewpoint_variation=2, scale_variation=1, truncation=2, occlusion=0),  # 100%
        kp_record("dog", [30.0, None], viewpoint_variation=2, scale_variation=1, truncation=3, occlusion=1),  # 0%
    ]
    s = summarize(recs, SPAIR, alphas=[0.1])
    b = s["breakdown"]
    assert b["viewpoint_variation"]["easy"]["pck_pair"]["0.1"] == 50.0
    assert b["viewpoint_variation"]["hard"]["pck_pair"]["0.1"] == 50.0 and b["viewpoint_variation"]["hard"]["n_pairs"] == 2
    assert "medium" not in b["viewpoint_variation"]
    assert b["truncation"]["tgt"]["pck_pair"]["0.1"] == 100.0 and b["truncation"]["both"]["pck_pair"]["0.1"] == 0.0
    assert b["occlusion"]["src"]["n_keypoints"] == 1
    assert s["categories"]["cat"]["pck_pair"]["0.1"] == 75.0 and s["categories"]["dog"]["pck_pair"]["0.1"] == 0.0
    assert s["category_mean"]["pck_pair"]["0.1"] == 37.5
    assert s["overall"]["pck_pair"]["0.1"] == pytest.approx(50.0) and s["overall"]["pck_keypoint"]["0.1"] == 60.0


def test_spair_controlled_breakdown_keeps_only_pairs_whose_other_factors_are_easy():
    # Table 5 of the SPair-71k paper: one factor varies, the others at easy (view-point, scale) / none.
    f = dict(viewpoint_variation=0, scale_variation=0, truncation=0, occlusion=0)
    recs = [
        kp_record("cat", [1.0, 20.0], **f),  # r1, every factor easy: 50 %
        kp_record("cat", [1.0, 1.0], **dict(f, viewpoint_variation=2)),  # r2, view-point hard alone: 100 %
        kp_record("cat", [30.0, None], **dict(f, viewpoint_variation=2, scale_variation=1)),  # r3, two factors: in no T5 cell
        kp_record("dog", [1.0, 30.0, 30.0, 30.0], **dict(f, occlusion=1)),  # r4, occlusion src alone: 25 %
        kp_record("dog", [1.0], **dict(f, truncation=2)),  # r5, truncation tgt alone: 100 %
        kp_record("dog", [1.0, 1.0], viewpoint_variation=0, scale_variation=0, truncation=0),  # r6, no occlusion field: T4 only
    ]
    s = summarize(recs, SPAIR, alphas=[0.1])
    t4, t5 = s["breakdown"], s["breakdown_controlled"]
    assert t4["viewpoint_variation"]["easy"]["n_pairs"] == 4 and t4["viewpoint_variation"]["hard"]["n_pairs"] == 2
    assert {lv: g["n_pairs"] for lv, g in t5["viewpoint_variation"].items()} == {"easy": 1, "hard": 1}
    assert t5["viewpoint_variation"]["easy"]["pck_pair"]["0.1"] == 50.0
    assert t5["viewpoint_variation"]["hard"]["pck_pair"]["0.1"] == 100.0
    assert set(t5["scale_variation"]) == {"easy"}  # r3's medium scale comes with a hard view-point
    assert t5["truncation"]["tgt"]["n_pairs"] == 1 and t5["truncation"]["tgt"]["pck_pair"]["0.1"] == 100.0
    assert t5["occlusion"]["src"]["pck_pair"]["0.1"] == 25.0 and t5["occlusion"]["src"]["n_keypoints"] == 4
    assert t5["occlusion"]["none"]["n_pairs"] == 1  # r1 only; r6 lacks the field


def test_spair_tables_and_reports_show_both_breakdowns_with_counts(tmp_path):
    from rich.console import Console

    from semcorr_cli.evaluate import keypoint_tables

    f = dict(viewpoint_variation=0, scale_variation=0, truncation=0, occlusion=0)
    recs = [kp_record("cat", [1.0, 20.0], **f), kp_record("cat", [1.0, 1.0], **dict(f, viewpoint_variation=2, occlusion=3))]
    s = summarize(recs, SPAIR, alphas=[0.1])
    con = Console(width=200, record=True)
    for t in keypoint_tables(s):
        con.print(t)
    text = con.export_text()
    assert "pair*" in text and "T5" in text
    hard = next(line for line in text.splitlines() if "viewpoint_variation" in line and "hard" in line)
    assert [c.strip() for c in hard.split("│")[3:9]] == ["1", "100.0", "100.0", "0", "–", "–"]  # T4: 1 pair; T5: none alone
    header = make_header({"dataset": "spair"}, SPAIR.to_dict(), {"model": "test"}, {"limit": None, "shard": None}, 2)
    write_csv(tmp_path / "r.csv", EvaluationRun(header, recs, s))
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    alone = [r for r in rows if r["section"] == "viewpoint_variation alone"]
    assert {(r["group"], r["metric"], r["n_pairs"]) for r in alone} == {("easy", "pck_pair", "1"), ("easy", "pck_keypoint", "1")}


def test_mask_summary():
    recs = [
        {"index": 0, "category": "Faces", "lt_acc": 0.9, "iou": 0.5},
        {"index": 1, "category": "Faces", "lt_acc": 0.7, "iou": 0.3},
        {"index": 2, "category": "ant", "lt_acc": 0.5, "iou": 0.1},
    ]
    s = summarize(recs, get_protocol("caltech-101"))
    assert s["categories"]["Faces"]["lt_acc"] == pytest.approx(80.0) and s["categories"]["Faces"]["iou"] == pytest.approx(40.0)
    assert s["overall"]["lt_acc"] == pytest.approx(70.0) and s["overall"]["iou"] == pytest.approx(30.0)


def test_presets_are_consistent_and_documented():
    assert default_protocol("pf-willow").name == "pf-willow-kps"
    assert default_protocol("pf-pascal").name == "pf-pascal-ncnet"
    nc = get_protocol("pf-pascal-ncnet")
    assert nc.threshold == "img" and nc.direction == "trg->src" and nc.measure_size == (224, 224) and nc.coords == "one-based"
    sf = get_protocol("pf-pascal-sfnet")
    assert sf.threshold == "bbox" and sf.average == "pair" and sf.sampling == "nearest" and sf.coords == "raw"
    img = get_protocol("pf-pascal-sfnet-img")
    assert img.threshold == "img" and img.measure_size == (320, 320) and img.average == "pair" and img.sampling == "nearest"
    assert sf.options() == {"pair_list": "sfnet", "coords": "raw"}
    assert get_protocol("tss").options() == {}
    assert {p.name for p in protocols_for("pf-willow")} == {"pf-willow-kps", "pf-willow-bbox"}
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "protocols.md").read_text()
    for name, p in PRESETS.items():
        assert f"`{name}`" in doc, f"{name} is not documented in docs/protocols.md"
        assert Protocol.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_customize_and_validation():
    p = customize(get_protocol("custom"), alphas=[0.2], threshold="kps")
    assert p.name == "custom+" and p.derived_from == "custom" and p.alphas == (0.2,) and p.threshold == "kps"
    assert customize(get_protocol("custom"), alphas=None) is get_protocol("custom")
    with pytest.raises(UsageError):
        customize(get_protocol("custom"), threshold="diag")
    with pytest.raises(UsageError):
        customize(get_protocol("custom"), direction="both")
    with pytest.raises(UsageError):
        customize(get_protocol("custom"), alphas=[1.5])
    with pytest.raises(UsageError):
        get_protocol("nope")


def _run():
    p = get_protocol("custom")
    recs = [kp_record("a", [1.0, 8.0], L=40.0), kp_record("b", [None, 3.0], L=40.0)]
    header = make_header({"dataset": "custom"}, p.to_dict(), {"model": "test"}, {"limit": None, "shard": None}, 2)
    return EvaluationRun(header, recs, summarize(recs, p))


def test_json_and_csv_reports_carry_the_protocol_and_every_figure(tmp_path):
    run = _run()
    write_json(tmp_path / "r.json", run)
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["protocol"]["name"] == "custom" and rep["protocol"]["threshold"] == "img"
    # L = 40: α = 0.05 → 2 px (pair a 1/2, pair b 0/1), α = 0.1 → 4 px (a 1/2, b 1/1)
    assert rep["summary"]["overall"]["pck_pair"] == pytest.approx({"0.05": 25.0, "0.1": 75.0, "0.15": 75.0})
    write_csv(tmp_path / "r.csv", run)
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    proto = {r["group"]: r["value"] for r in rows if r["section"] == "protocol"}  # plain cells, not JSON
    assert proto["direction"] == "src->trg" and proto["alphas"] == "0.05;0.1;0.15" and proto["name"] == "custom"
    fig = {(r["section"], r["group"], r["metric"], r["alpha"]): float(r["value"]) for r in rows if r["section"] not in ("protocol", "run")}
    assert fig[("overall", "all", "pck_keypoint", "0.05")] == pytest.approx(100 / 3)
    assert fig[("overall", "all", "pck_keypoint", "0.1")] == pytest.approx(200 / 3)
    assert fig[("category", "b", "pck_pair", "0.1")] == 100.0
    assert ("curve", "all", "pck_pair", "0.3") in fig


def test_plot_png(tmp_path):
    write_plot(tmp_path / "c.png", _run())
    with Image.open(tmp_path / "c.png") as im:
        assert im.format == "PNG" and im.size == (900, 600)
    from semcorr.evaluate.plot import PALETTE

    img = draw_curves({"all": [0.0] * 30, "x": [100.0] * 30}, size=(400, 300))
    # plot area x 70..210, y 40 (100 %) .. 240 (0 %): "x" (second colour) along the top, "all" (black, 3 px) along the bottom
    assert img.getpixel((150, 40)) == PALETTE[1]
    assert img.getpixel((150, 241)) == (0, 0, 0)
    assert img.getpixel((150, 140)) == (255, 255, 255)
    with pytest.raises(UsageError):
        run = _run()
        run.header["protocol"] = get_protocol("caltech-101").to_dict()
        write_plot(tmp_path / "m.png", run)


def test_sfnet_headline_is_the_mean_over_pairs_as_eval_pascal():
    # SFNet's eval_pascal.py: correct_keypoints() is each pair's mean, summed and divided by the
    # number of pairs. Three pairs with 16, 16 and 4 points, 2 correct in each (L = 100, α = 0.1;
    # an error of exactly α·L counts, torch.le): (2/16 + 2/16 + 2/4) / 3 = 25 %, pooled 6/36.
    def pair(n, correct):
        return kp_record("cat", [10.0] * correct + [50.0] * (n - correct), L=100.0)

    recs = [pair(16, 2), pair(16, 2), pair(4, 2)]
    for name in ("pf-pascal-sfnet", "pf-pascal-sfnet-img"):
        s = summarize(recs, get_protocol(name), alphas=[0.1])
        assert s["headline"]["value"] == pytest.approx(25.0)
        assert s["headline"]["average"] == "pair"
        assert s["overall"]["pck_keypoint"]["0.1"] == pytest.approx(100 * 6 / 36)
