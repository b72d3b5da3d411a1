"""Library errors name parameters; the CLI names their flags (semcorr.errors.param)."""

import typer
from typer.testing import CliRunner

from semcorr.errors import DataError, UsageError, param, render_params
from semcorr_cli.common import flag_for, handle_errors


def test_str_names_the_parameter_and_render_maps_it():
    e = UsageError(f"{param('batch_size')} must be at least 1, got 0; see {param('model_options')}")
    assert str(e) == "batch_size must be at least 1, got 0; see model_options"
    assert e.render(flag_for) == "--batch-size must be at least 1, got 0; see --model-opt"
    assert render_params("no marks {x}") == "no marks {x}"


def test_cli_prints_the_flag_and_exit_code():
    app = typer.Typer()

    @app.command()
    @handle_errors
    def cmd(kind: str = "usage"):
        if kind == "usage":
            raise UsageError(f"{param('size')} must be between 16 and 4096 pixels, not 5")
        raise DataError("'x.h5': not a semcorr record file")

    r = CliRunner().invoke(app, [])
    assert r.exit_code == 2 and "--size must be between 16 and 4096 pixels, not 5" in r.output
    assert "\x1f" not in r.output
    r = CliRunner().invoke(app, ["--kind", "data"])
    assert r.exit_code == 1 and "not a semcorr record file" in r.output
