"""What every subcommand shares: consoles, error handling, options, device choice.

A subcommand module defines ``register(app)`` and wraps its body in
:func:`handle_errors`, so a :class:`semcorr.errors.SemcorrError` becomes one
sentence on stderr and exit code 1 (data) or 2 (usage), never a traceback.
Ending early is quiet too, and leaves no partial output (writers are context
managers that only rename their temporary file into place on success):

* the reader of stdout went away (``| head``): no message, exit status
  :data:`EXIT_SIGPIPE` (141 = 128 + SIGPIPE, as the shell reports Unix tools);
* Ctrl-C (SIGINT): ``semcorr: error: interrupted`` once, exit status 130.

Commands check what they are given before any work, and before they import
torch or load a model (:mod:`semcorr.checks`): input files, the rows of a list
(:func:`bad_rows_gate`, :func:`report_skipped`) and output locations
(:func:`check_outputs`); an operating-system error that still escapes (a disk
that fills up) is one sentence too.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import os
import shlex
import signal
import sys
from collections.abc import Callable
from typing import Any, Literal, Optional, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from semcorr.errors import DataError, SemcorrError, UsageError, param, render_params
from semcorr.parsing import parse_key_values, parse_name_list

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> None:
    """Print ``semcorr: error: <message>`` on stderr and exit with ``code``."""
    err_console.print(f"[bold red]semcorr: error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


#: Exit status of a stage whose stdout reader went away: 128 + SIGPIPE, as for Unix tools.
EXIT_SIGPIPE = 128 + signal.SIGPIPE
#: Exit status after Ctrl-C: 128 + SIGINT.
EXIT_SIGINT = 128 + signal.SIGINT


def silence_stdout() -> None:
    """Point file descriptor 1 at /dev/null, so that Python's final flush of a broken stdout is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout already closed or not a real file
        pass


def interrupt_once(signum, frame) -> None:
    """SIGINT handler: raise KeyboardInterrupt once; later Ctrl-Cs are ignored so the clean-up runs to its end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def install_signal_handlers() -> None:
    """For the ``semcorr`` process itself (not for in-process callers such as tests): see :func:`interrupt_once`."""
    signal.signal(signal.SIGINT, interrupt_once)


#: Library parameters whose flag is not ``--`` + the name with dashes (see :func:`flag_for`).
FLAG_OF_PARAM: dict[str, str] = {
    "model_options": "--model-opt",
    "reader_options": "--option",
    "output": "-o/--output",
}


def flag_for(name: str) -> str:
    """The flag that sets library parameter ``name`` (``batch_size`` → ``--batch-size``), for error messages."""
    return FLAG_OF_PARAM.get(name, "--" + name.replace("_", "-"))


#: The running command's typer context (set by :func:`handle_errors`, read by :func:`history_line`).
_COMMAND_CONTEXT: contextvars.ContextVar[typer.Context | None] = contextvars.ContextVar("semcorr_command_context", default=None)
#: The parameter :func:`handle_errors` adds to a command, through which typer hands it the context.
_CONTEXT_PARAM = "_semcorr_context"


#: The stages that stream records and so run side by side in a pipe.
PIPE_STAGES = frozenset({"extract", "extract-features", "correlate", "refine", "flow", "warp"})
#: A pipe of the design card has three stages; each takes its share of the cores.
PIPE_STAGES_SHARING = 3


def is_pipe(fd: int) -> bool:
    """True when file descriptor ``fd`` is a pipe (a FIFO), not a terminal or a file."""
    import stat

    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return False


def pipe_thread_count(command: str, stdin_is_pipe: bool, stdout_is_pipe: bool, cpus: int, env: dict) -> int | None:
    """Intra-op threads for a stage inside a pipe, or None to leave torch's default.

    Stages joined by pipes run at the same time, each with torch's default of one
    thread per core: on 2 cores three stages then ran 2.0× slower than the same work
    in one process (threads spinning against each other; benchmarks/bench_pipe.py).
    A streaming stage reading or writing a pipe therefore takes ``cpus // 3`` threads
    (at least 1), unless ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` says otherwise.
    """
    if command not in PIPE_STAGES or not (stdin_is_pipe or stdout_is_pipe):
        return None
    if env.get("OMP_NUM_THREADS") or env.get("MKL_NUM_THREADS"):
        return None
    return max(1, cpus // PIPE_STAGES_SHARING)


def share_cores_in_pipes(argv: list[str]) -> None:
    """Before torch is imported: give a stage inside a pipe its share of the cores (:func:`pipe_thread_count`)."""
    command = argv[1] if len(argv) > 1 else ""
    n = pipe_thread_count(command, is_pipe(0), is_pipe(1), os.cpu_count() or 1, os.environ)
    if n is not None:
        os.environ["OMP_NUM_THREADS"] = str(n)


def handle_errors(fn: F) -> F:
    """Turn library errors into one line on stderr and the right exit code (see the module docstring).

    The wrapped command also receives its typer context (a parameter typer fills and the command
    does not see), kept for :func:`history_line` while the command runs.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = _COMMAND_CONTEXT.set(kwargs.pop(_CONTEXT_PARAM, None))
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except SemcorrError as exc:
            fail(exc.render(flag_for), exc.exit_code)
        except BrokenPipeError:
            # the reader went away (e.g. `| head`): stop at once, quietly, as Unix tools do
            silence_stdout()
            raise typer.Exit(EXIT_SIGPIPE) from None
        except KeyboardInterrupt:
            fail("interrupted", EXIT_SIGINT)
        except MemoryError:
            fail("out of memory; try a smaller --size or --batch-size", 1)
        except OSError as exc:  # the file system refused (full disk, lost permission): one sentence, not a traceback
            where = f"'{exc.filename}': " if exc.filename else ""
            fail(f"{where}{exc.strerror or exc}", 1)
        finally:
            _COMMAND_CONTEXT.reset(token)

    signature = inspect.signature(fn, eval_str=True)
    context = inspect.Parameter(_CONTEXT_PARAM, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=typer.Context)
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), context])  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def warn(text: str) -> None:
    """``semcorr: warning: <text>`` on stderr (parameters marked in ``text`` named by their flags)."""
    err_console.print(f"semcorr: warning: {render_params(text, flag_for)}", highlight=False, soft_wrap=True)


def check_outputs(*files: str | os.PathLike | None, folder: str | os.PathLike | None = None) -> None:
    """Before any work: every output file (None and ``-``, standard output, are skipped) and ``folder`` can be written.

    One helper for every command, so an unwritable output is the same one
    sentence everywhere (see :func:`semcorr.checks.check_output_file`).
    """
    from semcorr.checks import check_output_dir, check_output_file

    for f in files:
        if f is not None and str(f) != "-":
            check_output_file(f)
    if folder is not None:
        check_output_dir(folder)


def check_records_input(source: str | os.PathLike | None) -> None:
    """Before any work: a records input file (None and ``-`` are standard input) exists and is a file."""
    from semcorr.checks import require_file

    if source is not None and str(source) != "-":
        require_file(source, "input")


def bad_rows_gate(bad, total: int, skip_bad: bool, quiet: bool = False) -> None:
    """Before the work on a list: refuse its ``bad`` rows (:class:`semcorr.checks.BadRow`), or with ``--skip-bad`` announce them."""
    from semcorr.checks import BadRowsError, plural

    if not bad:
        return
    good = total - len(bad)
    if not skip_bad or good == 0:
        raise BadRowsError(bad, total, f"--skip-bad computes the {plural(good, 'other pair')}" if good else None)
    if not quiet:
        warn(f"skipping {plural(len(bad), 'bad pair')} of {total}; they are listed at the end")


def report_skipped(bad, total: int, outcome: str) -> None:
    """After the work: list the skipped rows and exit with status 1 (nothing when none was skipped)."""
    from semcorr.checks import skipped_rows_report

    if bad:
        fail(skipped_rows_report(bad, total, outcome), 1)


def history_line() -> str:
    """The running command with its effective non-default options, for the records' ``history``."""
    ctx = _COMMAND_CONTEXT.get()
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
    """``--device``: auto, cpu or cuda (see :func:`semcorr.pipeline.resolve_device`)."""
    from semcorr.pipeline import resolve_device as resolve

    return resolve(device)


def layer_filler(device, stage: str, quiet: bool = False):
    """A :class:`semcorr.pipeline.LayerFiller` that says once on stderr (unless ``quiet``) what it computes."""
    from semcorr.pipeline import LayerFiller

    def note(text: str) -> None:
        err_console.print(f"semcorr: {stage}: {render_params(text, flag_for)}", highlight=False, soft_wrap=True)

    return LayerFiller(device, None if quiet else note)


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


def parse_str_list(text: str | None) -> list[str] | None:
    """``--layers a,b`` → ``["a", "b"]`` (None stays None): :func:`semcorr.parsing.parse_name_list`."""
    return None if text is None else parse_name_list(text, "layers")


def parse_model_options(items: list[str] | None) -> dict:
    """``--model-opt key=value`` items → dict, values decoded as JSON when they can be (:func:`semcorr.parsing.parse_key_values`)."""
    return parse_key_values(items, param("model_options"), json_values=True)


def working_size(value: int | None, option: str = "--size") -> int | None:
    """Every command's ``--size`` (a square working side), checked in one place: the range of :func:`semcorr.images.parse_size`."""
    if value is None:
        return None
    from semcorr.images import MAX_SIZE, MIN_SIZE

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


# ----------------------------------------------------------------------------- shared options
# Each option several commands take is declared here once (its flags and default); a command may
# word the help for what the option means to it. Fixed choices are typer choice types (Literal):
# typer refuses another value (exit 2) and --help lists the choices; the values stay plain strings.

#: ``--dtype``: how stored volumes are kept (None: as computed).
Dtype = Optional[Literal["float16", "float32"]]
#: ``--compression`` of stored volumes.
Compression = Literal["gzip", "lzf", "none"]
#: ``--method``: how a score volume becomes matches (:data:`semcorr.flow.METHODS`; a test keeps the two equal).
MatchMethod = Optional[Literal["argmax", "soft-argmax", "kernel-soft-argmax"]]
#: ``--device`` stays text: besides auto, cpu and cuda it takes ``cuda:N`` (checked by :func:`resolve_device`).
DEVICE_HELP = "auto (CUDA when present), cpu or cuda."


def device_option(help: str = DEVICE_HELP) -> Any:
    """``--device`` (default auto)."""
    return typer.Option("auto", "--device", help=help)


def quiet_option(help: str = "No progress bar or summary.") -> Any:
    """``-q/--quiet``."""
    return typer.Option(False, "-q", "--quiet", help=help)


def output_option(help: str, default: Any = None) -> Any:
    """``-o/--output`` (``...`` as ``default``: required)."""
    return typer.Option(default, "-o", "--output", help=help)


def size_option(help: str, default: int | None = None) -> Any:
    """``--size``, a square working side (checked by :func:`working_size`)."""
    return typer.Option(default, "--size", help=help)


def weights_option(help: str, default: str | None = "default") -> Any:
    """``--weights`` of a learned model (read by :func:`model_weights`)."""
    return typer.Option(default, "--weights", help=help)


OutputOpt = output_option("Output file (.h5 for an HDF5 file); '-' or omitted: stream to stdout.")
DeviceOpt = device_option()
QuietOpt = quiet_option()
DtypeOpt = typer.Option(None, "--dtype", help="Store volumes as float16 or float32 (default: as computed).")
CompressionOpt = typer.Option("none", "--compression", help="Compression of stored volumes: gzip, lzf or none.")
SkipBadOpt = typer.Option(
    False, "--skip-bad",
    help="A list with bad rows (missing images, empty cells): compute the good pairs, list the skipped rows at the end and exit with status 1 (default: stop before any work).",
)  # fmt: skip

KeepInputsOpt = typer.Option(False, "--keep-inputs", help="Keep the input datasets (features, correlation) in the output records.")

__all__ = [
    "console",
    "err_console",
    "fail",
    "handle_errors",
    "bad_rows_gate",
    "check_outputs",
    "check_records_input",
    "report_skipped",
    "warn",
    "history_line",
    "resolve_device",
    "layer_filler",
    "progress",
    "print_json",
    "DataError",
    "UsageError",
]

