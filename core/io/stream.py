"""Reading and writing record sequences: HDF5 files on disk and framed streams in pipes.

A **file** is one HDF5 file holding many pairs under ``/pairs/``.
A **stream** is a sequence of frames, each::

    8 bytes  magic  b"SEMCORR\\n"
    8 bytes  length N, unsigned little-endian
    N bytes  a complete HDF5 file image holding exactly one pair

so every stage can read, process and write pair after pair with bounded
memory. Every reader accepts both forms; see ``docs/format.md``.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import h5py

from ..checks import require_file
from ..errors import DataError, UsageError, param
from ..files import atomic_output
from .records import PairRecord, check_root, read_record, write_record, write_root_attrs

STREAM_MAGIC = b"SEMCORR\n"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
HEADER = struct.Struct("<8sQ")
#: Largest frame a reader accepts (guards against reading a foreign stream's garbage length).
MAX_FRAME = 1 << 36


# ----------------------------------------------------------------------------- memory


def _load_malloc_trim():
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _load_malloc_trim()


def release_memory() -> None:
    """Hand freed heap memory back to the OS between records (glibc only).

    Records of different sizes leave the allocator fragmented; without this a
    long stream's resident memory creeps up although nothing is kept.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


# ----------------------------------------------------------------------------- frames


def record_to_bytes(rec: PairRecord, history: list[str], dtype: str | None = None, compression: str | None = None) -> bytes:
    """One record as an in-memory HDF5 file image (the payload of a stream frame)."""
    buf = io.BytesIO()
    with h5py.File(buf, "w", track_order=True) as f:
        write_root_attrs(f, history)
        write_record(f.create_group("pairs", track_order=True), rec, dtype, compression)
    return buf.getvalue()


def bytes_to_records(data: bytes, where: str, nan_flows: bool = False) -> list[PairRecord]:
    """Parse an HDF5 file image into its records."""
    try:
        f = h5py.File(io.BytesIO(data), "r")
    except OSError:
        raise DataError(f"{where} is not a valid HDF5 image (truncated or corrupt)") from None
    with f:
        history = check_root(f, where)
        return [read_record(g, history, nan_flows) for g in f["pairs"].values()]


def write_frame(out: BinaryIO, payload: bytes) -> None:
    out.write(HEADER.pack(STREAM_MAGIC, len(payload)))
    out.write(payload)
    out.flush()


def _read_exact(src: BinaryIO, n: int) -> bytes:
    chunks = []
    remaining = n
    while remaining:
        b = src.read(remaining)
        if not b:
            break
        chunks.append(b)
        remaining -= len(b)
    return b"".join(chunks)


def iter_frames(src: BinaryIO, first: bytes = b"") -> Iterator[bytes]:
    """Payloads of the frames of a stream (``first``: bytes already read from it)."""
    index = 0
    while True:
        head = first + _read_exact(src, HEADER.size - len(first))
        first = b""
        if not head:
            return
        if len(head) < HEADER.size:
            raise DataError(f"stream truncated in the header of record {index + 1}")
        magic, length = HEADER.unpack(head)
        if magic != STREAM_MAGIC:
            raise DataError(f"stream corrupt at record {index + 1} (bad frame magic)")
        if length > MAX_FRAME:
            raise DataError(f"stream corrupt at record {index + 1} (frame length {length})")
        payload = _read_exact(src, length)
        if len(payload) < length:
            raise DataError(f"stream truncated in record {index + 1} ({len(payload)} of {length} bytes)")
        index += 1
        yield payload


# ----------------------------------------------------------------------------- reading


def _stdin() -> BinaryIO:
    return sys.stdin.buffer


def iter_records(
    source: str | os.PathLike | None = None, stdin: BinaryIO | None = None, nan_flows: bool = False
) -> Iterator[PairRecord]:
    """Every record of a file, a stream file, or standard input, one at a time.

    ``source``: a path, ``"-"`` or ``None`` for standard input. Records holding
    NaN or Inf are refused; ``nan_flows``: except NaN in flows (see :func:`read_record`).
    """
    if source is None or str(source) == "-":
        src = stdin if stdin is not None else _stdin()
        if src.isatty() if hasattr(src, "isatty") else False:
            raise UsageError("no input: give a file, or pipe the output of another semcorr command into this one")
        yield from _iter_binary(src, "standard input", nan_flows)
        return
    path = require_file(source, "input")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head == HDF5_MAGIC:
        yield from _iter_h5_file(path, nan_flows)
        return
    with open(path, "rb") as fh:
        yield from _iter_binary(fh, f"'{path}'", nan_flows)


def _iter_h5_file(path: Path, nan_flows: bool = False) -> Iterator[PairRecord]:
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise DataError(f"'{path}' is a damaged HDF5 file") from None
    with f:
        history = check_root(f, f"'{path}'")
        for name in f["pairs"]:
            try:
                g = f["pairs"][name]
            except (KeyError, OSError):
                raise DataError(f"'{path}': record '{name}' is damaged") from None
            yield read_record(g, history, nan_flows)


def _iter_binary(src: BinaryIO, where: str, nan_flows: bool = False) -> Iterator[PairRecord]:
    head = _read_exact(src, 8)
    if not head:
        raise DataError(f"{where} is empty: expected a semcorr stream or HDF5 file")
    if head == STREAM_MAGIC:
        for i, payload in enumerate(iter_frames(src, head)):
            yield from bytes_to_records(payload, f"record {i + 1} of {where}", nan_flows)
        return
    if head == HDF5_MAGIC:
        data = head + src.read()
        yield from bytes_to_records(data, where, nan_flows)
        return
    raise DataError(f"{where} is neither a semcorr stream nor an HDF5 file")


# ----------------------------------------------------------------------------- writing


class RecordWriter:
    """Write records to a file (atomically) or as a stream (to stdout or a file object).

    ``output``: a path ending in ``.h5``/``.hdf5`` → one HDF5 file, written to a
    temporary file and renamed into place when the writer closes without
    error; ``"-"`` or ``None`` → a stream on standard output (refused when
    standard output is a terminal); any other path → a stream file.
    ``history`` is the upstream history; ``command`` is appended to it.
    """

    def __init__(
        self,
        output: str | os.PathLike | None,
        command: str,
        dtype: str | None = None,
        compression: str | None = None,
        stdout: BinaryIO | None = None,
    ):
        self.output = None if output is None or str(output) == "-" else Path(output)
        self.command = command
        self.dtype = dtype
        self.compression = None if compression in (None, "none") else compression
        self._stdout = stdout
        self._h5: h5py.File | None = None
        self._stream: BinaryIO | None = None
        self._tmp: Path | None = None
        self._files = contextlib.ExitStack()
        self.count = 0
        if self.dtype not in (None, "float16", "float32"):
            raise UsageError(f"{param('dtype')} must be float16 or float32, not '{dtype}'")
        if self.compression not in (None, "gzip", "lzf"):
            raise UsageError(f"{param('compression')} must be gzip, lzf or none, not '{compression}'")

    @property
    def is_file(self) -> bool:
        return self.output is not None and self.output.suffix.lower() in (".h5", ".hdf5")

    def __enter__(self) -> RecordWriter:
        if self.output is None:
            out = self._stdout if self._stdout is not None else sys.stdout.buffer
            if hasattr(out, "isatty") and out.isatty():
                raise UsageError("refusing to write binary records to a terminal: use -o FILE.h5 or a pipe")
            self._stream = out
        else:
            # the file is closed (the callback) before atomic_output renames or removes it
            self._tmp = self._files.enter_context(atomic_output(self.output))
            self._files.callback(self._close)
            try:
                if self.is_file:
                    self._h5 = h5py.File(self._tmp, "w", track_order=True)
                    self._pairs = self._h5.create_group("pairs", track_order=True)
                    self._history_written = False
                else:
                    self._stream = open(self._tmp, "wb")
            except BaseException:
                self._files.__exit__(*sys.exc_info())
                raise
        return self

    def write(self, rec: PairRecord) -> None:
        history = list(rec.history) + [self.command]
        if self._h5 is not None:
            if not self._history_written:
                write_root_attrs(self._h5, history)
                self._history_written = True
            write_record(self._pairs, rec, self.dtype, self.compression)
            self._h5.flush()
        else:
            assert self._stream is not None
            # a BrokenPipeError (the reader went away) propagates: the command line ends quietly on it
            write_frame(self._stream, record_to_bytes(rec, history, self.dtype, self.compression))
        self.count += 1
        release_memory()

    def _close(self) -> None:
        if self._h5 is not None:
            if not self._history_written:
                write_root_attrs(self._h5, [self.command])
            self._h5.close()
        elif self._stream is not None:
            self._stream.close()

    def __exit__(self, exc_type, exc, tb) -> bool:
        """A file: closed, then renamed into place on success or removed on any error (Ctrl-C included)."""
        return self._files.__exit__(exc_type, exc, tb)


def write_records(output, records, command: str, **kwargs) -> int:
    """Write an iterable of records; returns how many were written."""
    with RecordWriter(output, command, **kwargs) as w:
        for rec in records:
            w.write(rec)
    return w.count
