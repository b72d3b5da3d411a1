"""The ``semcorr`` command: a family of small stages over one HDF5 record format.

Each subcommand lives in its own module of this package and defines
``register(app)``; :data:`COMMANDS` names the module of every command. A module
that is not installed is skipped.

The console script registers only the module of the command it was given
(``semcorr correlate ...`` imports ``semcorr_cli.correlate`` alone); anything
else (``semcorr --help``, a mistyped command) gets every command. ``app`` is the
full application, built on first access, for in-process callers and tests.
"""

from __future__ import annotations

import importlib
import sys

import typer
from typer.core import TyperGroup

HELP = """Dense semantic correspondence from the shell.

Stages pass one HDF5 record format between them, through files or pipes:

  semcorr extract a.jpg b.jpg | semcorr correlate | semcorr flow | semcorr warp --image a.jpg -o out.png

  semcorr extract a.jpg b.jpg --model sfnet | semcorr flow --model sfnet | semcorr warp --image a.jpg -o out.png

Exit codes: 0 success, 1 bad data, 2 bad usage, 130 interrupted (Ctrl-C),
141 the next command in the pipe stopped reading. Format spec: docs/format.md.
"""

#: Every command name (aliases included) → the module of this package that registers it, in
#: the order ``semcorr --help`` lists them. tests/test_startup.py checks it against the modules.
COMMANDS: dict[str, str] = {
    "extract-features": "extract",
    "extract": "extract",
    "correlate": "correlate",
    "refine": "refine",
    "flow": "flow",
    "warp": "warp",
    "inspect": "inspect_cmd",
    "show": "show",
    "evaluate": "evaluate",
    "propagate": "propagate",
    "train": "train",
    "convert-weights": "convert",
}
COMMAND_MODULES = list(dict.fromkeys(COMMANDS.values()))


class _Group(TyperGroup):
    """The root group, whose ``--help`` flag defaults to ``False`` rather than unset.

    Typer coerces a parameter that has no bool value through pydantic, whose
    import costs more than the rest of ``--help``; with a bool default the
    root's help flag needs no coercion, so ``semcorr <stage> --help`` never
    imports pydantic.
    """

    def get_help_option(self, ctx):  # type: ignore[no-untyped-def]
        option = super().get_help_option(ctx)
        if option is not None and option.default is None:
            option.default = False
        return option


def _print_version(value: bool) -> None:
    if value:
        from semcorr import __version__

        typer.echo(f"semcorr {__version__}")
        raise typer.Exit(0)


def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True, callback=_print_version, expose_value=False
    ),
) -> None:
    pass


def build_app(command: str | None = None) -> typer.Typer:
    """The ``semcorr`` application with every command, or with only the module of ``command``."""
    application = typer.Typer(
        name="semcorr",
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode="rich",
        context_settings={"help_option_names": ["-h", "--help"]},
        pretty_exceptions_enable=False,
        cls=_Group,
    )
    application.callback()(_root)
    modules = [COMMANDS[command]] if command in COMMANDS else COMMAND_MODULES
    for name in modules:
        module_name = f"semcorr_cli.{name}"
        try:
            mod = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        mod.register(application)
    return application


def __getattr__(name: str) -> typer.Typer:
    if name == "app":
        application = globals()["app"] = build_app()
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Console-script entry point."""
    from .common import EXIT_SIGPIPE, install_signal_handlers, share_cores_in_pipes, silence_stdout

    install_signal_handlers()
    share_cores_in_pipes(sys.argv)
    command = sys.argv[1] if len(sys.argv) > 1 else None
    try:
        build_app(command)()
    except BrokenPipeError:  # pragma: no cover - downstream closed the pipe outside a command (e.g. --help | head)
        silence_stdout()
        sys.exit(EXIT_SIGPIPE)


if __name__ == "__main__":  # pragma: no cover
    main()
