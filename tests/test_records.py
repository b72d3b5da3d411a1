"""The record format: plain-h5py round trips, streams, and clean rejection of broken input."""

import io
import struct

import h5py
import numpy as np
import pytest

from semcorr.errors import DataError
from semcorr.io.records import FORMAT_VERSION, PairRecord
from semcorr.io.stream import HEADER, STREAM_MAGIC, RecordWriter, iter_records, record_to_bytes


def _plain_h5py_file(path, version=1, flow_shape=(4, 5, 2)):
    """A record written exactly as docs/format.md says, with nothing but h5py."""
    with h5py.File(path, "w") as f:
        f.attrs["semcorr_format"] = version
        f.attrs["history"] = ["external tool v1"]
        g = f.create_group("pairs/p0")
        g.attrs["src_path"] = "a.png"
        g.attrs["trg_path"] = "b.png"
        g.attrs["src_size"] = [4, 5]
        g.attrs["trg_size"] = [6, 7]
        ys, xs = np.mgrid[0:4, 0:5].astype(np.float32)
        g["flow/src_to_trg"] = np.zeros(flow_shape, np.float32) + np.stack([xs, ys], -1)[: flow_shape[0], : flow_shape[1]]
        g["flow/trg_to_src"] = np.ones((6, 7, 2), np.float32)
        feats = g.create_group("features/src")
        feats["layer3"] = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
        ds = feats["layer3"]
        ds.attrs["backbone"] = "resnet101"
        ds.attrs["stride"] = 16
        g["features/trg/layer3"] = np.ones((2, 3, 4), np.float32)


def test_record_written_with_plain_h5py_is_read(tmp_path):
    path = tmp_path / "ext.h5"
    _plain_h5py_file(path)
    (rec,) = list(iter_records(path))
    assert rec.pair_id == "p0" and rec.src_size == (4, 5) and rec.trg_size == (6, 7)
    assert rec.flow["src_to_trg"][3, 4].tolist() == [4.0, 3.0]
    assert rec.features["src"]["layer3"][1, 2, 3] == 23.0
    assert rec.feature_attrs["layer3"]["stride"] == 16
    assert rec.history == ["external tool v1"]
    assert rec.stage == "flow"


def test_semcorr_file_is_readable_with_plain_h5py(tmp_path):
    rec = PairRecord("000000", "a.png", "b.png", (3, 4), (5, 6))
    rec.corr = np.random.rand(2, 2, 3, 3).astype(np.float32)
    rec.corr_attrs = {"method": "hypercolumn", "layers": ["features.6", "features.13"]}
    with RecordWriter(tmp_path / "c.h5", "semcorr correlate", dtype="float16", compression="gzip") as w:
        w.write(rec)
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert f.attrs["semcorr_format"] == FORMAT_VERSION
        assert list(f.attrs["history"]) == ["semcorr correlate"]
        ds = f["pairs/000000/corr"]
        assert ds.dtype == np.float16
        assert ds.attrs["method"] == "hypercolumn"
        assert np.allclose(ds[()], rec.corr, atol=1e-3)
        assert list(f["pairs/000000"].attrs["src_size"]) == [3, 4]


def test_stream_round_trip_keeps_order_and_history(tmp_path):
    recs = []
    for i in range(3):
        r = PairRecord(f"{i:06d}", f"s{i}.png", f"t{i}.png", (2, 3), (2, 3), history=["semcorr extract x y"])
        r.flow = {"src_to_trg": np.full((2, 3, 2), i, np.float32), "trg_to_src": np.zeros((2, 3, 2), np.float32)}
        recs.append(r)
    buf = io.BytesIO()
    with RecordWriter(None, "semcorr flow", stdout=buf) as w:
        for r in recs:
            w.write(r)
    buf.seek(0)
    back = list(iter_records("-", stdin=buf))
    assert [r.pair_id for r in back] == ["000000", "000001", "000002"]
    assert [float(r.flow["src_to_trg"][0, 0, 0]) for r in back] == [0.0, 1.0, 2.0]
    assert back[0].history == ["semcorr extract x y", "semcorr flow"]


def test_stream_frame_layout_is_as_documented():
    rec = PairRecord("p", "a", "b", (1, 1), (1, 1))
    payload = record_to_bytes(rec, ["h"])
    buf = io.BytesIO()
    with RecordWriter(None, "cmd", stdout=buf) as w:
        w.write(rec)
    data = buf.getvalue()
    magic, length = struct.unpack("<8sQ", data[:16])
    assert magic == STREAM_MAGIC == b"SEMCORR\n"
    assert length == len(data) - 16
    assert payload[:8] == b"\x89HDF\r\n\x1a\n"


def _stream_bytes(n=2):
    buf = io.BytesIO()
    with RecordWriter(None, "cmd", stdout=buf) as w:
        for i in range(n):
            w.write(PairRecord(str(i), "a", "b", (1, 1), (1, 1)))
    return buf.getvalue()


def test_truncated_stream_is_rejected_after_good_records():
    data = _stream_bytes(2)
    cut = io.BytesIO(data[:-100])
    it = iter_records("-", stdin=cut)
    assert next(it).pair_id == "0"
    with pytest.raises(DataError, match="truncated in record 2"):
        next(it)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"hello world, not a stream", "neither a semcorr stream"),
        (STREAM_MAGIC + struct.pack("<Q", 10) + b"0123456789", "not a valid HDF5"),
        (STREAM_MAGIC + b"\x01", "truncated in the header"),
    ],
)
def test_foreign_or_broken_input_is_rejected(data, message):
    with pytest.raises(DataError, match=message):
        list(iter_records("-", stdin=io.BytesIO(data)))


def test_newer_format_and_foreign_hdf5_are_rejected(tmp_path):
    _plain_h5py_file(tmp_path / "new.h5", version=FORMAT_VERSION + 1)
    with pytest.raises(DataError, match="newer than this semcorr"):
        list(iter_records(tmp_path / "new.h5"))
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(DataError, match="not a semcorr file"):
        list(iter_records(tmp_path / "foreign.h5"))


def test_wrong_flow_shape_is_rejected(tmp_path):
    _plain_h5py_file(tmp_path / "bad.h5", flow_shape=(3, 5, 2))
    with pytest.raises(DataError, match="flow/src_to_trg has shape"):
        list(iter_records(tmp_path / "bad.h5"))


def test_failed_write_leaves_no_output(tmp_path):
    out = tmp_path / "out.h5"
    with pytest.raises(RuntimeError):
        with RecordWriter(out, "cmd") as w:
            w.write(PairRecord("0", "a", "b", (1, 1), (1, 1)))
            raise RuntimeError("crash mid-way")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
