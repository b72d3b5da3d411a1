"""SPair-71k reader: the shared annotation samples and split lists, and a generated look-alike."""

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED
from semcorr.datasets import SPair71k, open_dataset
from semcorr.datasets.spair import parse_pair_name
from semcorr.errors import DataError, UsageError

SPAIR = SHARED / "spair-71k-format"
needs_spair = pytest.mark.skipif(not (SPAIR / "Layout").is_dir(), reason="shared SPair-71k samples not present")


def test_pair_names_with_colon_or_underscore():
    assert parse_pair_name("000001-2008_002719-2008_004100:aeroplane") == ("000001-2008_002719-2008_004100:aeroplane", "aeroplane")
    assert parse_pair_name("000001-2008_002719-2008_004100_aeroplane\n") == ("000001-2008_002719-2008_004100:aeroplane", "aeroplane")
    with pytest.raises(DataError):
        parse_pair_name("not a pair")


@needs_spair
def test_shared_layouts_have_the_published_sizes():
    # only PairAnnotation/test is in the sample, so only the test lists can be opened
    for layout, n in (("large", 12234), ("small", 2438)):
        assert len(open_dataset("spair", SPAIR, split="test", layout=layout)) == n
    assert len(open_dataset("spair", SPAIR).categories) == 18


@needs_spair
def test_shared_sample_pair():
    ds = open_dataset("spair", SPAIR)
    p = ds[0]
    assert p.pair_id == "000001-2008_002719-2008_004100:aeroplane" and p.category == "aeroplane"
    assert p.src_name == "JPEGImages/aeroplane/2008_002719.jpg"
    assert p.src_size == (333, 500) and p.trg_size == (332, 500)  # imsize is [W, H, depth]
    np.testing.assert_array_equal(p.src_kps, [[212, 153], [300, 130], [330, 127]])
    np.testing.assert_array_equal(p.trg_kps, [[39, 145], [364, 171], [416, 173]])
    np.testing.assert_array_equal(p.trg_bbox, [36, 92, 500, 200])
    assert p.meta["truncation"] == 2 and p.meta["occlusion"] == 2 and p.meta["viewpoint_variation"] == 0
    assert p.meta["kps_ids"] == ["0", "7", "11"]
    one = open_dataset("spair", SPAIR, coords="one-based")[0]
    np.testing.assert_array_equal(one.src_kps, p.src_kps - 1)
    with pytest.raises(DataError, match="pair annotation"):
        ds[1]  # not in the sample


def _write_pair(root: Path, split: str, name: str, **fields):
    d = root / "PairAnnotation" / split
    d.mkdir(parents=True, exist_ok=True)
    ann = {
        "src_imname": "a.jpg", "trg_imname": "b.jpg", "src_imsize": [40, 30, 3], "trg_imsize": [50, 20, 3],
        "src_bndbox": [1, 2, 30, 25], "trg_bndbox": [3, 4, 45, 19], "category": "cat",
        "src_kps": [[1, 2], [3, 4]], "trg_kps": [[5, 6], [7, 8]], "kps_ids": ["1", "4"], "mirror": 1,
        "viewpoint_variation": 2, "scale_variation": 1, "truncation": 0, "occlusion": 3,
    }  # fmt: skip
    ann.update(fields)
    (d / f"{name}.json").write_text(json.dumps(ann))


def test_lookalike_with_published_colon_names(tmp_path):
    (tmp_path / "Layout" / "small").mkdir(parents=True)
    (tmp_path / "Layout" / "small" / "trn.txt").write_text("000007-a-b:cat\n")
    _write_pair(tmp_path, "trn", "000007-a-b:cat")
    ds = SPair71k(tmp_path, split="train", layout="small")
    p = ds[0]
    assert p.trg_size == (20, 50) and p.meta["mirror"] == 1 and p.meta["viewpoint_variation"] == 2
    assert p.src_path == tmp_path / "JPEGImages" / "cat" / "a.jpg"
    np.testing.assert_array_equal(p.src_bbox, [1, 2, 30, 25])


def test_wrong_root_and_options(tmp_path):
    with pytest.raises(DataError, match=r"Layout.*test\.txt.*SPair"):
        SPair71k(tmp_path)
    (tmp_path / "Layout" / "large").mkdir(parents=True)
    (tmp_path / "Layout" / "large" / "test.txt").write_text("000001-a-b:cat\n")
    with pytest.raises(DataError, match="annotation folder"):
        SPair71k(tmp_path)
    with pytest.raises(UsageError):
        SPair71k(tmp_path, split="dev")
    with pytest.raises(UsageError):
        SPair71k(tmp_path, layout="medium")
