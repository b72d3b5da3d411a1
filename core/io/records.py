"""One image pair's record, and its layout inside an HDF5 group.

The full specification is ``docs/format.md``. In short, a record is the group
``/pairs/<pair_id>/`` holding:

* attrs ``src_path``, ``trg_path`` (str), ``src_size``, ``trg_size`` (``[H, W]`` of
  the original images);
* ``features/src/<layer>``, ``features/trg/<layer>``: ``(C, h, w)`` with attrs
  ``backbone``, ``weights``, ``input_size`` (``[H', W']``) and ``stride``;
* ``corr``: ``(h_src, w_src, h_trg, w_trg)`` with attrs describing how it was made;
* ``flow/src_to_trg`` ``(H_src, W_src, 2)`` and ``flow/trg_to_src``
  ``(H_trg, W_trg, 2)``, float32 absolute pixel ``(x, y)`` in the other image;
* optional ``confidence/src_to_trg`` ``(H_src, W_src)`` / ``confidence/trg_to_src``;
* optional ``mask/src`` ``(H_src, W_src)`` / ``mask/trg`` ``(H_trg, W_trg)``: float32
  co-segmentation masks in [0, 1] (:mod:`semcorr.coseg`);
* any other dataset under ``extra/`` (e.g. DCCNet's fusion weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import DataError

FORMAT_VERSION = 1
FLOW_KEYS = ("src_to_trg", "trg_to_src")
SIDES = ("src", "trg")
#: Record attribute: the absolute folder that relative ``src_path``/``trg_path`` are relative to.
IMAGE_ROOT_ATTR = "image_root"


def _attr_value(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray):
        if v.dtype.kind in ("O", "S", "U"):
            return [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in v.tolist()]
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def read_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    """HDF5 attributes as plain Python values (str, int, float, lists)."""
    return {k: _attr_value(v) for k, v in obj.attrs.items()}


def write_attrs(obj: h5py.HLObject, attrs: dict[str, Any]) -> None:
    """Write plain Python values as HDF5 attributes (lists of str become string arrays)."""
    for k, v in attrs.items():
        if v is None:
            continue
        if isinstance(v, (list, tuple)) and v and all(isinstance(x, str) for x in v):
            obj.attrs.create(k, list(v), dtype=h5py.string_dtype("utf-8"))
        elif isinstance(v, dict):
            import json

            obj.attrs[k] = json.dumps(v, sort_keys=True)
        else:
            obj.attrs[k] = v


@dataclass
class PairRecord:
    """Everything the pipeline knows about one image pair.

    Arrays are numpy: features ``(C, h, w)``, ``corr`` ``(h_src, w_src, h_trg, w_trg)``,
    flows ``(H, W, 2)`` float32, confidences ``(H, W)``, co-segmentation masks
    ``mask["src"]`` ``(H_src, W_src)`` / ``mask["trg"]`` ``(H_trg, W_trg)``.
    """

    pair_id: str
    src_path: str
    trg_path: str
    src_size: tuple[int, int]
    trg_size: tuple[int, int]
    features: dict[str, dict[str, np.ndarray]] = field(default_factory=lambda: {"src": {}, "trg": {}})
    feature_attrs: dict[str, dict[str, Any]] = field(default_factory=dict)  # per layer, shared by both sides
    corr: np.ndarray | None = None
    corr_attrs: dict[str, Any] = field(default_factory=dict)
    flow: dict[str, np.ndarray] = field(default_factory=dict)
    flow_attrs: dict[str, Any] = field(default_factory=dict)
    confidence: dict[str, np.ndarray] = field(default_factory=dict)
    mask: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    extra_attrs: dict[str, dict[str, Any]] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)

    @property
    def stage(self) -> str:
        """The latest stage this record has been through: ``flow``, ``correlate``, ``extract`` or ``empty``."""
        if self.flow:
            return "flow"
        if self.corr is not None:
            return "correlate"
        if self.features["src"]:
            return "extract"
        return "empty"

    def layers(self) -> list[str]:
        """Feature layers present on both sides, in stored order."""
        return [name for name in self.features["src"] if name in self.features["trg"]]

    def image_path(self, side: str) -> Path:
        """Where the record's ``src`` or ``trg`` image lies.

        An absolute path as it is; a relative one against the record's
        ``image_root`` attribute (the folder ``extract`` resolved it against:
        its working directory for two images, ``--root`` or the CSV's folder
        for ``--pairs``), or against the current directory when there is none.
        """
        path = Path(self.src_path if side == "src" else self.trg_path)
        root = self.attrs.get(IMAGE_ROOT_ATTR)
        return path if path.is_absolute() or not root else Path(root) / path

    def method(self) -> str:
        """What made the flow, for titles: the model (``sfnet``; ``ncnet + kernel-soft-argmax`` after refine),
        or ``training-free matching (argmax)`` for a plain correlation."""
        model = self.flow_attrs.get("model")
        if model not in (None, "", "none"):
            return str(model)
        flow = str(self.flow_attrs.get("method", "flow"))
        for line in reversed(self.history):
            words = line.split()
            if len(words) > 1 and words[1] == "refine" and "--model" in words[:-1]:
                return f"{words[words.index('--model') + 1]} + {flow}"
        return f"training-free matching ({flow})"


# ----------------------------------------------------------------------------- writing


def _dataset(group: h5py.Group, name: str, data: np.ndarray, dtype: str | None, compression: str | None):
    arr = np.asarray(data)
    if dtype is not None and arr.dtype.kind == "f":
        arr = arr.astype(dtype)
    kwargs: dict[str, Any] = {}
    if compression and arr.size >= 1024:
        kwargs["compression"] = compression
        if compression == "gzip":
            kwargs["compression_opts"] = 4
        kwargs["shuffle"] = True
    return group.create_dataset(name, data=arr, **kwargs)


def write_record(
    pairs: h5py.Group, rec: PairRecord, dtype: str | None = None, compression: str | None = None
) -> h5py.Group:
    """Write ``rec`` as ``pairs/<pair_id>``.

    ``dtype`` (``"float16"``/``"float32"``) and ``compression`` (``"gzip"``,
    ``"lzf"`` or ``None``) apply to the volumes (features, ``corr``); flows
    are always float32.
    """
    if rec.pair_id in pairs:
        raise DataError(f"pair id '{rec.pair_id}' appears twice in one output")
    g = pairs.create_group(rec.pair_id, track_order=True)
    write_attrs(
        g,
        {
            "src_path": rec.src_path,
            "trg_path": rec.trg_path,
            "src_size": np.asarray(rec.src_size, dtype=np.int64),
            "trg_size": np.asarray(rec.trg_size, dtype=np.int64),
        },
    )
    write_attrs(g, rec.attrs)
    if rec.features["src"] or rec.features["trg"]:
        fg = g.create_group("features")
        for side in SIDES:
            sg = fg.create_group(side, track_order=True)
            for layer, arr in rec.features[side].items():
                ds = _dataset(sg, layer, arr, dtype, compression)
                write_attrs(ds, rec.feature_attrs.get(layer, {}))
    if rec.corr is not None:
        ds = _dataset(g, "corr", rec.corr, dtype, compression)
        write_attrs(ds, rec.corr_attrs)
    if rec.flow:
        fl = g.create_group("flow")
        write_attrs(fl, rec.flow_attrs)
        for key, arr in rec.flow.items():
            fl.create_dataset(key, data=np.asarray(arr, dtype=np.float32))
    if rec.confidence:
        cg = g.create_group("confidence")
        for key, arr in rec.confidence.items():
            cg.create_dataset(key, data=np.asarray(arr, dtype=np.float32))
    if rec.mask:
        mg = g.create_group("mask")
        for key, arr in rec.mask.items():
            mg.create_dataset(key, data=np.asarray(arr, dtype=np.float32))
    for path, arr in rec.extra.items():
        ds = _dataset(g, f"extra/{path}", arr, dtype, compression)
        write_attrs(ds, rec.extra_attrs.get(path, {}))
    return g


def write_root_attrs(f: h5py.File, history: list[str]) -> None:
    f.attrs["semcorr_format"] = FORMAT_VERSION
    f.attrs.create("history", list(history), dtype=h5py.string_dtype("utf-8"))


# ----------------------------------------------------------------------------- reading


def check_root(f: h5py.File, where: str) -> list[str]:
    """Validate a file's root attributes; return its history."""
    if "semcorr_format" not in f.attrs:
        raise DataError(f"{where} is HDF5 but not a semcorr file (no 'semcorr_format' attribute)")
    version = int(np.asarray(f.attrs["semcorr_format"]).item())
    if version > FORMAT_VERSION:
        raise DataError(
            f"{where} uses semcorr format {version}, newer than this semcorr reads ({FORMAT_VERSION}); upgrade semcorr"
        )
    if version < 1:
        raise DataError(f"{where} has an invalid semcorr_format {version}")
    if "pairs" not in f or not isinstance(f["pairs"], h5py.Group):
        raise DataError(f"{where} has no '/pairs' group")
    hist = f.attrs.get("history", [])
    hist = _attr_value(hist)
    if isinstance(hist, str):
        hist = [hist]
    return list(hist)


def _size_attr(g: h5py.Group, name: str, where: str) -> tuple[int, int]:
    if name not in g.attrs:
        raise DataError(f"{where} lacks the '{name}' attribute")
    v = np.asarray(g.attrs[name]).reshape(-1)
    if v.size != 2 or (v <= 0).any():
        raise DataError(f"{where} has an invalid '{name}' {v.tolist()} (expected [H, W])")
    return int(v[0]), int(v[1])


def _read_group_arrays(g: h5py.Group, prefix: str = "") -> dict[str, tuple[np.ndarray, dict]]:
    out = {}
    for k, v in g.items():
        if isinstance(v, h5py.Dataset):
            out[prefix + k] = (v[()], read_attrs(v))
        else:
            out.update(_read_group_arrays(v, prefix + k + "/"))
    return out


def refuse_non_finite(arr: np.ndarray, where: str, name: str, allow_nan: bool = False) -> np.ndarray:
    """``arr`` itself, or :class:`DataError` naming ``where`` and dataset ``name`` when it holds NaN or Inf.

    ``allow_nan``: refuse only Inf (NaN flows are "no position" to ``evaluate --flows``).
    """
    if arr.dtype.kind in "fc":
        bad = int(np.count_nonzero(np.isinf(arr) if allow_nan else ~np.isfinite(arr)))
        if bad:
            kind = "Inf" if allow_nan else "NaN or Inf"
            raise DataError(f"{where}: dataset '{name}' holds {bad} {kind} value(s) of {arr.size}; non-finite numbers are not data")
    return arr


def read_record(g: h5py.Group, history: list[str] | None = None, nan_flows: bool = False) -> PairRecord:
    """Read and validate ``pairs/<pair_id>`` into a :class:`PairRecord`.

    Features, ``corr`` and flows holding NaN or Inf are refused (:class:`DataError`);
    ``nan_flows``: flows may hold NaN, "no position" (what ``evaluate --flows`` scores as a miss).
    """
    pid = g.name.rsplit("/", 1)[-1]
    where = f"record '{pid}'"
    attrs = read_attrs(g)
    for key in ("src_path", "trg_path"):
        if key not in attrs:
            raise DataError(f"{where} lacks the '{key}' attribute")
    rec = PairRecord(
        pair_id=pid,
        src_path=str(attrs.pop("src_path")),
        trg_path=str(attrs.pop("trg_path")),
        src_size=_size_attr(g, "src_size", where),
        trg_size=_size_attr(g, "trg_size", where),
        history=list(history or []),
    )
    attrs.pop("src_size")
    attrs.pop("trg_size")
    rec.attrs = attrs
    try:
        if "features" in g:
            for side in SIDES:
                if side not in g["features"]:
                    raise DataError(f"{where} has features but no 'features/{side}' group")
                for layer, ds in g["features"][side].items():
                    arr = ds[()]
                    if arr.ndim != 3:
                        raise DataError(f"{where}: features/{side}/{layer} must be (C, h, w), got {arr.shape}")
                    rec.features[side][layer] = refuse_non_finite(arr, where, f"features/{side}/{layer}")
                    rec.feature_attrs.setdefault(layer, read_attrs(ds))
        if "corr" in g:
            ds = g["corr"]
            if ds.ndim != 4:
                raise DataError(f"{where}: corr must be (h_src, w_src, h_trg, w_trg), got {ds.shape}")
            rec.corr = refuse_non_finite(ds[()], where, "corr")
            rec.corr_attrs = read_attrs(ds)
        if "flow" in g:
            rec.flow_attrs = read_attrs(g["flow"])
            for key, size in (("src_to_trg", rec.src_size), ("trg_to_src", rec.trg_size)):
                if key in g["flow"]:
                    arr = g["flow"][key][()]
                    if arr.shape != (size[0], size[1], 2):
                        raise DataError(
                            f"{where}: flow/{key} has shape {arr.shape}, expected {(size[0], size[1], 2)}"
                        )
                    rec.flow[key] = refuse_non_finite(arr.astype(np.float32), where, f"flow/{key}", allow_nan=nan_flows)
        if "confidence" in g:
            for key, ds in g["confidence"].items():
                rec.confidence[key] = ds[()]
        if "mask" in g:
            for key, size in (("src", rec.src_size), ("trg", rec.trg_size)):
                if key in g["mask"]:
                    arr = g["mask"][key][()]
                    if arr.shape != tuple(size):
                        raise DataError(f"{where}: mask/{key} has shape {arr.shape}, expected {tuple(size)}")
                    rec.mask[key] = arr.astype(np.float32)
        if "extra" in g:
            for path, (arr, a) in _read_group_arrays(g["extra"]).items():
                rec.extra[path] = arr
                rec.extra_attrs[path] = a
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{where} is damaged ({exc})") from None
    return rec
