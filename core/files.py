"""Writing files atomically (a temporary file in the same folder, then a rename), with the user's umask.

:func:`atomic_output` is the one way semcorr writes a whole file: records, weights, results,
reports, pictures, run files. The final name only ever holds a complete file (the old one, or the
new one); an error or Ctrl-C in the middle removes the temporary file and leaves the old file as it
was. :func:`atomic_outputs` does the same for several files that belong together (all or none).

Kept free of heavy imports, so any stage can use it before loading torch.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

#: Temporary files are named ``.<final name><random>.tmp`` (see :func:`is_temporary_of`).
TEMP_SUFFIX = ".tmp"


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temporary_beside(path: str | Path) -> tuple[int, str]:
    """A new temporary file next to ``path`` for an atomic write: ``(fd, name)``, named ``.<name>…tmp``.

    Its permissions are those a plain ``open`` would give the final file
    (0666 minus the umask), not ``mkstemp``'s private 0600.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=TEMP_SUFFIX)
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, tmp


def is_temporary_of(name: str, final: str) -> bool:
    """Whether file ``name`` is a temporary file of :func:`atomic_output` for the final file ``final``."""
    return name.startswith("." + final) and name.endswith(TEMP_SUFFIX)


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Write ``path`` atomically: yields a temporary path beside it (an empty file), renamed to ``path`` on success.

    The body writes the temporary path however it likes (``open``, ``h5py.File``, ``Image.save``);
    when it ends without error the file is renamed onto ``path``. Any exception — KeyboardInterrupt
    included — removes the temporary file and leaves an existing ``path`` untouched. Missing parent
    folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = temporary_beside(path)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_outputs(paths: Iterable[str | Path]) -> Iterator[list[Path]]:
    """Several files written together: yields their temporary paths; all are renamed into place on success, none on failure."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_output(p)) for p in paths]


def write_bytes_durably(tmp: str | Path, data: bytes) -> None:
    """Write ``data`` to ``tmp`` and flush it to the disk (before :func:`atomic_output` renames it)."""
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file via a temporary file in the same folder and a rename (see :func:`atomic_output`)."""
    with atomic_output(path) as tmp:
        write_bytes_durably(tmp, data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a UTF-8 text file via a temporary file and a rename (see :func:`atomic_output`)."""
    atomic_write_bytes(path, text.encode("utf-8"))
