"""Where the flows to score come from: a predictor run on the images, or a file of precomputed records.

Both give, for a dataset pair, ``(flow_src_to_trg (H_src, W_src, 2),
flow_trg_to_src (H_trg, W_trg, 2))`` — float32 absolute pixel ``(x, y)`` in the
other original image (:mod:`semcorr.flow`).

A *predictor* is any object with ``predict(src: PIL.Image, trg: PIL.Image)``
returning those two arrays (``semcorr.pipeline.build_predictor`` makes them);
``describe()`` is optional and goes into the results.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image, ImageOps

from ..errors import DataError, UsageError, param
from ..images import load_image
from ..io.records import FLOW_KEYS, check_root, refuse_non_finite
from ..io.stream import iter_records

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def mirror_flows(flow_st: np.ndarray, flow_ts: np.ndarray, src_width: int) -> tuple[np.ndarray, np.ndarray]:
    """Flows computed with a horizontally mirrored source → flows of the original source.

    ``flow_st`` ``(H_src, W_src, 2)`` is defined on the mirrored source;
    ``flow_ts`` ``(H_trg, W_trg, 2)`` points into it. Pixel ``x`` of the
    original is pixel ``W_src − 1 − x`` of the mirror.
    """
    st = np.ascontiguousarray(np.asarray(flow_st)[:, ::-1])
    ts = np.array(flow_ts, dtype=np.float32, copy=True)
    ts[..., 0] = (src_width - 1) - ts[..., 0]
    return st.astype(np.float32), ts


def _check_flows(flows: Any, src_size: tuple[int, int], trg_size: tuple[int, int], who: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(flows, (tuple, list)) or len(flows) != 2:
        raise DataError(f"{who} must return (flow_src_to_trg, flow_trg_to_src)")
    st, ts = (np.asarray(f, dtype=np.float32) for f in flows)
    for name, f, size in (("src_to_trg", st, src_size), ("trg_to_src", ts, trg_size)):
        if f.shape != (size[0], size[1], 2):
            raise DataError(f"{who}: flow {name} has shape {f.shape}, expected {(size[0], size[1], 2)}")
    return st, ts


class PredictorSource:
    """Flows from a predictor run on the pair's images.

    ``flip="gt"``: for pairs flagged as mirrored (``pair.flip``, TSS), the
    predictor sees the horizontally mirrored source and the flows are mapped
    back with :func:`mirror_flows` (weakalign's ``flip_img_A``).
    """

    def __init__(self, predictor: Any, flip: str = "none"):
        if not callable(getattr(predictor, "predict", None)):
            raise TypeError("a predictor needs a predict(src, trg) method")
        self.predictor = predictor
        self.flip = flip

    def describe(self) -> dict[str, Any]:
        d = getattr(self.predictor, "describe", None)
        info = dict(d()) if callable(d) else {"predictor": type(self.predictor).__name__}
        info["flip"] = self.flip
        return info

    def outputs(self, pair, flows: bool = True):
        """``(flow_st, flow_ts, transfer)``: the flows, and the predictor's own keypoint
        transfer (``predict_with_transfer``) or None (then the flows are sampled).
        ``flows=False``: the flows may be None when there is such a transfer."""
        src: Image.Image = load_image(pair.src_path)
        trg: Image.Image = load_image(pair.trg_path)
        mirrored = self.flip == "gt" and bool(getattr(pair, "flip", False))
        with_transfer = getattr(self.predictor, "predict_with_transfer", None)
        transfer = None
        if callable(with_transfer) and not mirrored:
            *out, transfer = with_transfer(src, trg, flows=flows)
            if transfer is not None and out[0] is None:
                return None, None, transfer
        else:
            out = self.predictor.predict(ImageOps.mirror(src) if mirrored else src, trg)
        st, ts = _check_flows(out, (src.height, src.width), (trg.height, trg.width), "the predictor")
        if mirrored:
            st, ts = mirror_flows(st, ts, src.width)
        return st, ts, transfer

    def flows(self, pair) -> tuple[np.ndarray, np.ndarray]:
        st, ts, _ = self.outputs(pair)
        return st, ts

    def coseg(self, pair) -> tuple[np.ndarray, np.ndarray]:
        """Co-segmentation masks ``(H_src, W_src)``, ``(H_trg, W_trg)`` from a predictor with ``predict_coseg``
        (a mirrored source's mask is mirrored back)."""
        if not callable(getattr(self.predictor, "predict_coseg", None)):
            raise UsageError(
                f"{getattr(self.predictor, 'name', 'this predictor')} predicts no masks; co-segmentation needs "
                f"{param('model')} sfnet {param('model_options')} mask_head=true (or {param('flows')} records with mask/src and mask/trg)"
            )
        src: Image.Image = load_image(pair.src_path)
        trg: Image.Image = load_image(pair.trg_path)
        mirrored = self.flip == "gt" and bool(getattr(pair, "flip", False))
        _, _, ms, mt = self.predictor.predict_coseg(ImageOps.mirror(src) if mirrored else src, trg)
        ms, mt = np.asarray(ms, dtype=np.float32), np.asarray(mt, dtype=np.float32)
        if mirrored:
            ms = np.ascontiguousarray(ms[:, ::-1])
        return ms, mt


def read_record_flows(g: h5py.Group, where: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Only the flows of a record group (features and correlations are not read): ``(H, W, 2)`` each, or None."""
    out: list[np.ndarray | None] = []
    for key in FLOW_KEYS:
        arr = None
        if "flow" in g and key in g["flow"]:
            try:
                arr = np.asarray(g["flow"][key][()], dtype=np.float32)
            except (OSError, KeyError, ValueError) as exc:
                raise DataError(f"{where}: flow/{key} is damaged ({exc})") from None
            if arr.ndim != 3 or arr.shape[2] != 2:
                raise DataError(f"{where}: flow/{key} has shape {arr.shape}, expected (H, W, 2)")
            refuse_non_finite(arr, where, f"flow/{key}", allow_nan=True)  # NaN: no position, a miss
        out.append(arr)
    return out[0], out[1]


def _keys(name: str, root: Path | None) -> list[str]:
    """The names a path may be matched by: as written (normalised) and absolute."""
    keys = [os.path.normpath(name).replace("\\", "/")]
    p = Path(name)
    if p.is_absolute():
        keys.append(str(p.resolve()))
    elif root is not None:
        keys.append(str((root / p).resolve()))
    return keys


class RecordFlows:
    """Flows read from a file of records in the standard format (``--flows results.h5``).

    Each record's ``src_path``/``trg_path`` attributes must name the pair's
    images as the dataset's pair list writes them (relative to the dataset
    root) or as absolute paths. HDF5 files are read lazily, one record per
    pair; stream files and standard input (``"-"``) are loaded once. A NaN flow value is a point the method
    gives no position for (scored as a miss); Inf is refused as bad data.
    """

    def __init__(self, path: str | Path, dataset_root: str | Path | None = None, stdin=None):
        stream = str(path) == "-"
        self.path = Path(path)
        self.where = "standard input" if stream else f"'{self.path}'"
        self.root = Path(dataset_root) if dataset_root is not None else None
        if not stream and not self.path.is_file():
            raise DataError(f"flows file '{self.path}' does not exist")
        self._index: dict[tuple[str, str], str] = {}
        self._loaded: dict[str, tuple[np.ndarray | None, np.ndarray | None]] = {}
        self._masks: dict[str, tuple[np.ndarray | None, np.ndarray | None]] = {}
        self._h5: h5py.File | None = None
        is_h5 = False
        if not stream:
            with open(self.path, "rb") as fh:
                is_h5 = fh.read(8) == HDF5_MAGIC
        if is_h5:
            self._open_h5()
        else:
            for rec in iter_records(path, stdin=stdin, nan_flows=True):
                self._add(rec.pair_id, rec.src_path, rec.trg_path)
                self._loaded[rec.pair_id] = (rec.flow.get("src_to_trg"), rec.flow.get("trg_to_src"))
                self._masks[rec.pair_id] = (rec.mask.get("src"), rec.mask.get("trg"))
        if not self._index:
            raise DataError(f"the flows in {self.where} hold no records")

    def _open_h5(self) -> None:
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError:
            raise DataError(f"'{self.path}' is a damaged HDF5 file") from None
        check_root(self._h5, f"'{self.path}'")
        for name, g in self._h5["pairs"].items():
            src, trg = g.attrs.get("src_path"), g.attrs.get("trg_path")
            if src is None or trg is None:
                raise DataError(f"'{self.path}': record '{name}' has no src_path/trg_path attributes")
            self._add(name, src.decode() if isinstance(src, bytes) else str(src), trg.decode() if isinstance(trg, bytes) else str(trg))

    def _add(self, pid: str, src: str, trg: str) -> None:
        for ks in _keys(src, self.root):
            for kt in _keys(trg, self.root):
                self._index.setdefault((ks, kt), pid)

    def __len__(self) -> int:
        return len(set(self._index.values()))

    def describe(self) -> dict[str, Any]:
        return {"flows": str(self.path) if self.where != "standard input" else "-", "records": len(self)}

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def find(self, pair) -> str:
        """The record id holding ``pair``'s flows; :class:`DataError` when there is none."""
        for ks, kt in zip(_keys(pair.src_name, self.root), _keys(pair.trg_name, self.root)):
            if (ks, kt) in self._index:
                return self._index[(ks, kt)]
        for ks in _keys(str(pair.src_path), None):
            for kt in _keys(str(pair.trg_path), None):
                if (ks, kt) in self._index:
                    return self._index[(ks, kt)]
        raise DataError(f"{self.where} has no record for the pair {pair.src_name} → {pair.trg_name}")

    def flows(self, pair) -> tuple[np.ndarray | None, np.ndarray | None]:
        pid = self.find(pair)
        if self._h5 is not None:
            return read_record_flows(self._h5["pairs"][pid], f"'{self.path}' record '{pid}'")
        return self._loaded[pid]

    def coseg(self, pair) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The record's co-segmentation masks ``mask/src``, ``mask/trg`` (None where absent)."""
        pid = self.find(pair)
        if self._h5 is not None:
            g = self._h5["pairs"][pid]
            return tuple(np.asarray(g["mask"][k][()], dtype=np.float32) if "mask" in g and k in g["mask"] else None for k in ("src", "trg"))  # type: ignore[return-value]
        return self._masks.get(pid, (None, None))


__all__ = ["PredictorSource", "RecordFlows", "mirror_flows"]
