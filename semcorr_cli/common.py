"""What every subcommand shares: consoles, error handling, options, device choice.

A subcommand module defines ``register(app)`` and wraps its body in
:func:`handle_errors`, so a :class:`core.errors.SemcorrError` becomes one
sentence on stderr and exit code 1 (data) or 2 (usage), never a traceback.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from core.errors import DataError, SemcorrError, UsageError

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> None:
    """Print ``semcorr: error: <message>`` on stderr and exit with ``code``."""
    err_console.print(f"[bold red]semcorr: error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Turn library errors into one line on stderr and the right exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except SemcorrError as exc:
            fail(str(exc), exc.exit_code)
        except BrokenPipeError:
            # the reader went away (e.g. `| head`): not our error
            try:
                sys.stdout = open(os.devnull, "w")
            finally:
                raise typer.Exit(1)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except MemoryError:
            fail("out of memory; try a smaller --size or --batch-size", 1)

    return wrapper  # type: ignore[return-value]


def _current_context():
    """The running click context (typer vendors click in recent versions)."""
    try:
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - typer using the real click
        from click import get_current_context
    return get_current_context(silent=True)


def history_line() -> str:
    """The running command with its effective non-default options, for the records' ``history``."""
    ctx = _current_context()
    if ctx is None:
        return " ".join(shlex.quote(a) for a in ["semcorr"] + sys.argv[1:])
    parts = ["semcorr", ctx.info_name or ""]
    for p in ctx.command.params:
        v = ctx.params.get(p.name)
        if v is None or v == p.default or v == () or v == []:
            continue
        values = list(v) if isinstance(v, (list, tuple)) else [v]
        if getattr(p, "param_type_name", "") == "argument":
            parts += [shlex.quote(str(x)) for x in values]
        elif isinstance(v, bool):
            parts.append(max(p.opts, key=len) if v else (p.secondary_opts[0] if p.secondary_opts else f"{max(p.opts, key=len)}=false"))
        else:
            parts += [f"{max(p.opts, key=len)} {shlex.quote(str(x))}" for x in values]
    return " ".join(parts)


def resolve_device(device: str):
    """``--device``: auto, cpu or cuda (see :func:`core.pipeline.resolve_device`)."""
    from core.pipeline import resolve_device as resolve

    return resolve(device)


def progress(quiet: bool = False, transient: bool = False) -> Progress:
    """A rich progress bar on stderr (hidden with ``--quiet`` or when stderr is not a terminal)."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=quiet or not err_console.is_terminal,
        transient=transient,
    )


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def parse_float_list(text: str, name: str) -> list[float]:
    try:
        return [float(x) for x in text.replace(";", ",").split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{name} must be a comma-separated list of numbers, got '{text}'") from None


def parse_str_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [x.strip() for x in text.split(",") if x.strip()]


def working_size(value: int | None, option: str = "--size") -> int | None:
    """Every command's ``--size`` (a square working side), checked in one place: the range of :func:`core.images.parse_size`."""
    if value is None:
        return None
    from core.images import MAX_SIZE, MIN_SIZE

    if not MIN_SIZE <= value <= MAX_SIZE:
        raise UsageError(f"{option} must be between {MIN_SIZE} and {MAX_SIZE} pixels, not {value}")
    return value


def model_weights(text: str | None) -> str | None:
    """Every command's ``--weights``: omitted or ``default`` → the shipped weights, ``none`` → ``None`` (an untrained head), else a file."""
    if text is None:
        return "default"
    return None if text.strip().lower() == "none" else text


def renamed(new_value: Any, old_value: Any, new: str, old: str, unset: Any = None) -> Any:
    """The value of an option that has a new spelling ``new`` and a hidden old one ``old`` (kept for a release)."""
    if old_value is not None and old_value != unset:
        if new_value is not None and new_value != unset:
            raise UsageError(f"{old} is the old spelling of {new}; give only {new}")
        return old_value
    return new_value


# Option declarations shared by the subcommands, so names and help stay consistent.
OutputOpt = typer.Option(None, "-o", "--output", help="Output file (.h5 for an HDF5 file); '-' or omitted: stream to stdout.")
DeviceOpt = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda.")
QuietOpt = typer.Option(False, "-q", "--quiet", help="No progress bar or summary.")
DtypeOpt = typer.Option(None, "--dtype", help="Store volumes as float16 or float32 (default: as computed).")
CompressionOpt = typer.Option("none", "--compression", help="Compression of stored volumes: gzip, lzf or none.")
BatchOpt = typer.Option(1, "--batch-size", min=1, help="Pairs processed together on the device.")
KeepInputsOpt = typer.Option(False, "--keep-inputs", help="Keep the input datasets (features, correlation) in the output records.")

__all__ = [
    "console",
    "err_console",
    "fail",
    "handle_errors",
    "history_line",
    "resolve_device",
    "progress",
    "print_json",
    "DataError",
    "UsageError",
]
