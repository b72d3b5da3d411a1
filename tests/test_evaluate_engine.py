"""The evaluate loop: hand-computed PCK on a generated dataset, resume, shard + merge, precomputed flows."""

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from conftest import SHARED
from semcorr.datasets import open_dataset
from semcorr.errors import DataError, UsageError
from semcorr.evaluate import RecordFlows, evaluate, merge_results, parse_shard, read_results, run_from_results, select_indices
from semcorr.geometry import pixel_grid
from semcorr.protocols import customize, get_protocol
from semcorr_cli.common import flag_for

TSS_ROOT = SHARED / "tss-sample" / "TSS_CVPR2016"
CUSTOM = get_protocol("custom")

# Three pairs of 40×30 images. The predictor below always predicts a (3, 0) shift.
#   pair 0 ("a"): truth (3, 0)  → 3 points, errors 0          → correct at every α
#   pair 1 ("a"): truth (3, 3.5) → 3 points, errors 3.5      → wrong at 0.05 (2 px), right at 0.1 (4 px)
#   pair 2 ("b"): truth (3, 10) → 1 visible point, error 10   → wrong up to 0.15 (6 px)
# L = max(30, 40) = 40 (img threshold of the custom preset).
PAIRS = [
    ("a", (3, 0), "5;10;20", "5;10;15"),
    ("a", (3, 3.5), "5;10;20", "5;10;15"),
    ("b", (3, 10), "5;-1;-1", "5;-1;-1"),
]


def make_dataset(root: Path, copies: int = 1):
    Image.new("RGB", (40, 30), (90, 90, 90)).save(root / "s.png")
    Image.new("RGB", (40, 30), (10, 10, 10)).save(root / "t.png")
    with open(root / "pairs.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source_image", "target_image", "XA", "YA", "XB", "YB", "category"])
        for _ in range(copies):
            for cat, (dx, dy), xs, ys in PAIRS:
                xb = ";".join(str(float(v) + dx) if v != "-1" else "-1" for v in xs.split(";"))
                yb = ";".join(str(float(v) + dy) if v != "-1" else "-1" for v in ys.split(";"))
                w.writerow(["s.png", "t.png", xs, ys, xb, yb, cat])
    return open_dataset("custom", root)


class Shift:
    """Predicts a constant shift; counts its calls."""

    def __init__(self, dx=3.0, dy=0.0):
        self.d = np.float32([dx, dy])
        self.calls = 0

    def describe(self):
        return {"model": "shift", "d": self.d.tolist()}

    def predict(self, src, trg):
        self.calls += 1
        gs = pixel_grid(src.height, src.width).numpy()
        gt = pixel_grid(trg.height, trg.width).numpy()
        return gs + self.d, gt - self.d


def test_hand_computed_pck(tmp_path):
    run = evaluate(make_dataset(tmp_path), CUSTOM, predictor=Shift())
    s = run.summary
    assert s["overall"]["pck_pair"] == pytest.approx({"0.05": 100 / 3, "0.1": 200 / 3, "0.15": 200 / 3})
    assert s["overall"]["pck_keypoint"] == pytest.approx({"0.05": 300 / 7, "0.1": 600 / 7, "0.15": 600 / 7})
    assert s["overall"]["n_keypoints"] == 7 and s["overall"]["n_pairs"] == 3
    assert s["categories"]["a"]["pck_pair"] == pytest.approx({"0.05": 50.0, "0.1": 100.0, "0.15": 100.0})
    assert s["categories"]["b"]["pck_pair"] == pytest.approx({"0.05": 0.0, "0.1": 0.0, "0.15": 0.0})
    assert s["category_mean"]["pck_pair"]["0.1"] == pytest.approx(50.0)
    assert s["headline"] == {"alpha": 0.1, "average": "pair", "value": pytest.approx(200 / 3)}
    # curve at α = 0.3 (12 px): everything correct
    assert s["curve"]["pck_pair"][s["curve"]["alphas"].index(0.3)] == pytest.approx(100.0)
    assert "breakdown" not in s
    # other α values are recomputed from the stored errors
    again = run_from_results(run.header, run.records, alphas=[0.3, 0.2])
    assert again.summary["overall"]["pck_pair"] == {"0.3": pytest.approx(100.0), "0.2": pytest.approx(200 / 3)}


class ShiftRule(Shift):
    """A model with its own keypoint rule (as MMNet): it moves points by (3, 3.5); its flows say (0, 0)."""

    def predict_with_transfer(self, src, trg, flows=True):
        self.calls += 1
        rule = lambda points, direction: np.asarray(points) + np.float64([3.0, 3.5])  # noqa: E731
        if not flows:
            return None, None, rule
        return pixel_grid(src.height, src.width).numpy(), pixel_grid(trg.height, trg.width).numpy(), rule


def test_a_predictor_with_its_own_keypoint_rule_is_scored_by_it(tmp_path):
    """Pair 1 is then exact (errors 0) and pair 0 off by 3.5 px: the mirror image of test_hand_computed_pck."""
    pred = ShiftRule()
    run = evaluate(make_dataset(tmp_path), CUSTOM, predictor=pred)
    assert pred.calls == 3
    errors = [r["errors"] for r in run.records]
    assert errors[0] == pytest.approx([3.5] * 3) and errors[1] == pytest.approx([0.0] * 3)
    assert errors[2][0] == pytest.approx(6.5) and errors[2][1:] == [None, None]
    assert run.summary["overall"]["pck_pair"]["0.1"] == pytest.approx(200 / 3)


def test_selection_and_shards():
    assert select_indices(10, limit=4) == [0, 1, 2, 3]
    assert select_indices(10, shard=(2, 3)) == [1, 4, 7]
    assert select_indices(10, limit=5, shard=(1, 2)) == [0, 2, 4]
    assert parse_shard("3/4") == (3, 4) and parse_shard(None) is None
    for bad in ("0/2", "3/2", "a/b", "1"):
        with pytest.raises(UsageError):
            parse_shard(bad)
    with pytest.raises(UsageError):
        select_indices(3, limit=0)


def test_resume_after_a_partial_results_file(tmp_path):
    ds = make_dataset(tmp_path, copies=2)  # 6 pairs
    full = evaluate(ds, CUSTOM, predictor=Shift(), results=tmp_path / "full.jsonl")
    lines = (tmp_path / "full.jsonl").read_text().splitlines()
    assert len(lines) == 7 and json.loads(lines[0])["protocol"]["name"] == "custom"
    # an interrupted run: header, two pairs, and half of the third line
    (tmp_path / "part.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2])
    pred = Shift()
    resumed = evaluate(ds, CUSTOM, predictor=pred, results=tmp_path / "part.jsonl", resume=True)
    assert pred.calls == 4 and resumed.resumed == 2
    assert resumed.summary == full.summary
    header, records, unterminated = read_results(tmp_path / "part.jsonl")
    assert [r["index"] for r in records] == list(range(6)) and not unterminated
    # a second resume has nothing left to do
    pred2 = Shift()
    evaluate(ds, CUSTOM, predictor=pred2, results=tmp_path / "part.jsonl", resume=True)
    assert pred2.calls == 0


def test_results_file_guards(tmp_path):
    ds = make_dataset(tmp_path)
    evaluate(ds, CUSTOM, predictor=Shift(), results=tmp_path / "r.jsonl", limit=1)
    with pytest.raises(UsageError) as refused:
        evaluate(ds, CUSTOM, predictor=Shift(), results=tmp_path / "r.jsonl")
    assert "--resume" in refused.value.render(flag_for)  # the library names the parameter, the CLI its flag
    with pytest.raises(UsageError, match="another protocol.*threshold"):
        evaluate(ds, customize(CUSTOM, threshold="kps"), predictor=Shift(), results=tmp_path / "r.jsonl", resume=True, limit=1)
    with pytest.raises(UsageError, match="selection"):
        evaluate(ds, CUSTOM, predictor=Shift(), results=tmp_path / "r.jsonl", resume=True)
    with pytest.raises(UsageError, match="other flows"):
        evaluate(ds, CUSTOM, predictor=Shift(dx=1), results=tmp_path / "r.jsonl", resume=True, limit=1)
    with pytest.raises(UsageError, match="is for pf-willow"):
        evaluate(ds, get_protocol("pf-willow-kps"), predictor=Shift())
    with pytest.raises(UsageError, match="either"):
        evaluate(ds, CUSTOM)


def test_shards_merged_equal_the_full_run(tmp_path):
    ds = make_dataset(tmp_path, copies=3)  # 9 pairs
    full = evaluate(ds, CUSTOM, predictor=Shift())
    paths = []
    for i in (1, 2, 3):
        paths.append(tmp_path / f"shard{i}.jsonl")
        evaluate(ds, CUSTOM, predictor=Shift(), results=paths[-1], shard=(i, 3))
    header, records = merge_results(paths)
    assert [r["index"] for r in records] == list(range(9))
    assert records == full.records
    assert run_from_results(header, records).summary == full.summary
    # merging overlapping files is fine when they agree; other protocols are refused
    assert merge_results(paths + paths[:1])[1] == records
    evaluate(ds, customize(CUSTOM, alphas=[0.2]), predictor=Shift(), results=tmp_path / "other.jsonl", limit=1)
    with pytest.raises(UsageError, match="another protocol"):
        merge_results(paths + [tmp_path / "other.jsonl"])


def _write_records(path: Path, pairs: list[tuple[str, str, np.ndarray, np.ndarray]]):
    """A records file written with plain h5py, as an external method would."""
    with h5py.File(path, "w") as f:
        f.attrs["semcorr_format"] = 1
        g = f.create_group("pairs")
        for k, (src, trg, st, ts) in enumerate(pairs):
            r = g.create_group(f"p{k}")
            r.attrs["src_path"] = src
            r.attrs["trg_path"] = trg
            r.attrs["src_size"] = np.array(st.shape[:2])
            r.attrs["trg_size"] = np.array(ts.shape[:2])
            r.create_dataset("flow/src_to_trg", data=st.astype(np.float32))
            r.create_dataset("flow/trg_to_src", data=ts.astype(np.float32))


def test_precomputed_flows_by_relative_or_absolute_names(tmp_path):
    ds = make_dataset(tmp_path)
    st, ts = Shift().predict(Image.new("RGB", (40, 30)), Image.new("RGB", (40, 30)))
    _write_records(tmp_path / "rel.h5", [("s.png", "t.png", st, ts)])
    _write_records(tmp_path / "abs.h5", [(str(tmp_path / "s.png"), str(tmp_path / "t.png"), st, ts)])
    expected = evaluate(ds, CUSTOM, predictor=Shift()).summary
    for name in ("rel.h5", "abs.h5"):
        flows = RecordFlows(tmp_path / name, ds.root)
        run = evaluate(ds, CUSTOM, flows=flows)
        flows.close()
        assert run.summary == expected and run.header["source"]["flows"].endswith(name)
    _write_records(tmp_path / "other.h5", [("x.png", "t.png", st, ts)])
    with pytest.raises(DataError, match="no record for the pair s.png"):
        evaluate(ds, CUSTOM, flows=RecordFlows(tmp_path / "other.h5", ds.root))
    _write_records(tmp_path / "small.h5", [("s.png", "t.png", st[:10], ts)])
    with pytest.raises(DataError, match="source flow is 40x10"):
        evaluate(ds, CUSTOM, flows=RecordFlows(tmp_path / "small.h5", ds.root))


@pytest.mark.skipif(not TSS_ROOT.is_dir(), reason="shared TSS sample not present")
def test_tss_ground_truth_scores_100_percent(tmp_path):
    ds = open_dataset("tss", TSS_ROOT)
    records = [(p.src_name, p.trg_name, p.flow_src_to_trg, p.flow_trg_to_src) for p in ds]
    _write_records(tmp_path / "gt.h5", records)
    run = evaluate(ds, get_protocol("tss"), flows=RecordFlows(tmp_path / "gt.h5", ds.root))
    s = run.summary
    assert set(s["subsets"]) == {"FG3DCar", "JODS", "PASCAL"}
    for b in s["subsets"].values():
        assert b["pck"] == {"0.05": 100.0} and b["src_to_trg"] == {"0.05": 100.0} and b["trg_to_src"] == {"0.05": 100.0}
    assert s["average"]["pck"] == {"0.05": 100.0} and s["headline"]["value"] == 100.0
    # a flow off by 5% of the longer side everywhere is just outside the threshold … inside at α = 0.06
    shifted = [(a, b, st + np.float32([0.051 * max(st.shape[:2]), 0]), ts) for a, b, st, ts in records]
    _write_records(tmp_path / "off.h5", shifted)
    off = evaluate(ds, get_protocol("tss"), flows=RecordFlows(tmp_path / "off.h5", ds.root)).summary
    assert off["overall"]["src_to_trg"]["0.05"] == 0.0 and off["overall"]["trg_to_src"]["0.05"] == 100.0
    assert off["overall"]["pck"]["0.05"] == 50.0
