"""The CLI's shared option declarations: choice types, the one declaration of each shared option."""

from typing import get_args

from typer.testing import CliRunner

from semcorr_cli.common import Compression, Dtype, MatchMethod
from semcorr_cli.main import app

runner = CliRunner()


def test_choice_types_list_what_the_library_accepts():
    from semcorr.flow import METHODS

    assert get_args(get_args(MatchMethod)[0]) == METHODS
    assert get_args(get_args(Dtype)[0]) == ("float16", "float32")
    assert get_args(Compression) == ("gzip", "lzf", "none")


def test_a_value_outside_a_choice_is_a_usage_error_before_any_work(tmp_path):
    cases = [
        (["correlate", "--dtype", "float64"], "--dtype"),
        (["correlate", "--compression", "zip"], "--compression"),
        (["flow", "--method", "magic"], "--method"),
        (["warp", "--direction", "up", "--image", "a.png", "-o", "x.png"], "--direction"),
        (["propagate", str(tmp_path), "--points", "p.csv", "--mode", "loop"], "--mode"),
    ]
    for args, flag in cases:
        r = runner.invoke(app, args, input=b"")
        assert r.exit_code == 2, (args, r.output)
        assert f"Invalid value for '{flag}'" in r.output, r.output
    assert list(tmp_path.iterdir()) == []


def test_evaluate_choices_are_the_protocols():
    from semcorr.datasets.base import COORDS
    from semcorr_cli.evaluate import Coords

    assert get_args(Coords) == COORDS
    r = runner.invoke(app, ["evaluate", "-d", "custom", "--root", ".", "--threshold", "box"])
    assert r.exit_code == 2 and "Invalid value for '--threshold'" in r.output


def test_train_options_are_declared_once_in_the_library():
    """Every TrainOptions field the command line sets is one `semcorr train` option with that field's default and help."""
    import dataclasses

    import typer.main

    from semcorr.train.options import HYPER_FIELDS, option_fields

    command = typer.main.get_command(app).commands["train"]
    by_name = {p.name: p for p in command.params}
    for f in option_fields():
        if not f.metadata["cli"]:
            assert f.name not in by_name
            continue
        p = by_name[f.name]
        assert p.help == f.metadata["help"], f.name
        if f.default is not dataclasses.MISSING and f.name not in ("image_size", "out"):
            assert p.default == f.default, f.name
    assert by_name["image_size"].opts == ["--size"] and by_name["model_options"].opts == ["--model-opt"]
    assert by_name["deterministic"].secondary_opts == ["--no-deterministic"]
    assert "lr_gamma" in HYPER_FIELDS and "seed" not in HYPER_FIELDS
    assert len([p for p in command.params if not p.hidden]) == 38  # 37 fields and --json, as before
    r = runner.invoke(app, ["train", "-m", "toy", "--data", "folder:x", "-o", "run", "--optimizer", "rmsprop"])
    assert r.exit_code == 2 and "Invalid value for '--optimizer'" in r.output
