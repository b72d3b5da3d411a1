"""The ``semcorr`` command: a family of small stages over one HDF5 record format.

Each subcommand lives in its own module of this package and defines
``register(app)``. Modules are listed in :data:`COMMAND_MODULES`; a module that
is not installed is skipped.
"""

from __future__ import annotations

import importlib
import sys

import typer

HELP = """Dense semantic correspondence from the shell.

Stages pass one HDF5 record format between them, through files or pipes:

  semcorr extract a.jpg b.jpg | semcorr correlate | semcorr flow | semcorr warp --image a.jpg -o out.png

  semcorr extract a.jpg b.jpg --model sfnet | semcorr flow --model sfnet | semcorr warp --image a.jpg -o out.png

Exit codes: 0 success, 1 bad data, 2 bad usage, 130 interrupted (Ctrl-C),
141 the next command in the pipe stopped reading. Format spec: docs/format.md.
"""

COMMAND_MODULES = [
    "extract",
    "correlate",
    "refine",
    "flow",
    "warp",
    "inspect_cmd",
    "show",
    "evaluate",
    "propagate",
    "train",
    "convert",
]

app = typer.Typer(
    name="semcorr",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from semcorr import __version__

        typer.echo(f"semcorr {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True, callback=_print_version, expose_value=False
    ),
) -> None:
    pass


def _register_all() -> None:
    for name in COMMAND_MODULES:
        module_name = f"semcorr_cli.{name}"
        try:
            mod = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        mod.register(app)


_register_all()


def main() -> None:
    """Console-script entry point."""
    from .common import EXIT_SIGPIPE, install_signal_handlers, share_cores_in_pipes, silence_stdout

    install_signal_handlers()
    share_cores_in_pipes(sys.argv)
    try:
        app()
    except BrokenPipeError:  # pragma: no cover - downstream closed the pipe outside a command (e.g. --help | head)
        silence_stdout()
        sys.exit(EXIT_SIGPIPE)


if __name__ == "__main__":  # pragma: no cover
    main()
