"""The CLI's shared option declarations: choice types, the one declaration of each shared option."""

from typing import get_args

from typer.testing import CliRunner

from semcorr_cli.common import Compression, Dtype, MatchMethod
from semcorr_cli.main import app

runner = CliRunner()


def test_choice_types_list_what_the_library_accepts():
    from core.flow import METHODS

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
    from core.datasets.base import COORDS
    from semcorr_cli.evaluate import Coords

    assert get_args(Coords) == COORDS
    r = runner.invoke(app, ["evaluate", "-d", "custom", "--root", ".", "--threshold", "box"])
    assert r.exit_code == 2 and "Invalid value for '--threshold'" in r.output
